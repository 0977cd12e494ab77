//! `-json` for every command that shows something: one flag, one formatter.

use clap::Args;
use serde::Serialize;

use super::Exit;

/// The output flags a showing command takes.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArgs {
    /// Print the answer as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    /// Prints `value` as JSON with `-json`, otherwise what `human` renders.
    pub fn print<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<Exit> {
        if self.json {
            println!("{}", json(value)?);
        } else {
            print!("{}", human(value));
        }
        Ok(Exit::Ok)
    }
}

/// JSON as Nomad's CLI prints it (indented by four spaces).
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_as_nomad_indents_it() {
        assert_eq!(
            json(&serde_json::json!({"A": [1]})).unwrap(),
            "{\n    \"A\": [\n        1\n    ]\n}"
        );
    }
}
