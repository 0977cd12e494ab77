//! What is wrong with an agent configuration: every problem with the file and line it was
//! found at, so `noded config validate` can list them all and `noded agent` can refuse to
//! start with the same words.

use std::fmt;

/// One problem: where (file, line when known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file it is in, as the user named it; `None` for flags and the defaults.
    pub file: Option<String>,
    /// 1-based line of the key (or of the syntax error) in `file`.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    /// A problem that belongs to no file (a flag, or the combination of all files).
    pub fn general(message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            message: message.into(),
        }
    }

    pub fn at(file: &str, line: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(file.to_string()),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// Every problem found, in the order the files and keys were read; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

/// Records a problem with the key at a dotted path (`server.raft_multiplier`); the caller
/// knows the file and finds the line.
pub type Report<'a> = &'a mut dyn FnMut(&str, String);
