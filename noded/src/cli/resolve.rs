//! Objects named by an id or a unique prefix of one, for every command: an exact id wins; one
//! match is it; several are an error that lists them, as Nomad's CLI does.

use anyhow::{anyhow, bail};
use controlplane::model::{AllocListStub, Evaluation, JobListStub, NodeListStub};
use serde::de::DeserializeOwned;

use super::format::{short, table};
use super::http::ApiClient;

/// Something a list endpoint returns and a prefix can name.
pub trait Listed: DeserializeOwned {
    /// "allocation", "evaluation", "node", "job".
    const NOUN: &'static str;
    /// The list endpoint that takes `?prefix=`.
    const LIST: &'static str;
    /// Shortest prefix accepted (ids are UUIDs: one character matches too much).
    const MIN_PREFIX: usize;
    /// Columns of the ambiguity listing.
    const COLUMNS: &'static [&'static str];
    fn id(&self) -> &str;
    fn row(&self) -> Vec<String>;
}

impl Listed for AllocListStub {
    const NOUN: &'static str = "allocation";
    const LIST: &'static str = "/v1/allocations";
    const MIN_PREFIX: usize = 2;
    const COLUMNS: &'static [&'static str] =
        &["ID", "Eval ID", "Job ID", "Task Group", "Desired", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            short(&self.id),
            short(&self.eval_id),
            self.job_id.clone(),
            self.task_group.clone(),
            self.desired_status.as_str().into(),
            self.client_status.as_str().into(),
        ]
    }
}

impl Listed for Evaluation {
    const NOUN: &'static str = "evaluation";
    const LIST: &'static str = "/v1/evaluations";
    const MIN_PREFIX: usize = 2;
    const COLUMNS: &'static [&'static str] =
        &["ID", "Priority", "Triggered By", "Job ID", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            short(&self.id),
            self.priority.to_string(),
            self.triggered_by.clone(),
            self.job_id.clone(),
            self.status.as_str().into(),
        ]
    }
}

impl Listed for NodeListStub {
    const NOUN: &'static str = "node";
    const LIST: &'static str = "/v1/nodes";
    const MIN_PREFIX: usize = 1;
    const COLUMNS: &'static [&'static str] = &["ID", "DC", "Name", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            short(&self.id),
            self.datacenter.clone(),
            self.name.clone(),
            self.status.as_str().into(),
        ]
    }
}

impl Listed for JobListStub {
    const NOUN: &'static str = "job";
    const LIST: &'static str = "/v1/jobs";
    const MIN_PREFIX: usize = 1;
    const COLUMNS: &'static [&'static str] = &["ID", "Type", "Priority", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.job_type.as_str().into(),
            self.priority.to_string(),
            self.status.as_str().into(),
        ]
    }
}

/// The one object `prefix` names.
pub async fn resolve<T: Listed>(api: &ApiClient, prefix: &str) -> anyhow::Result<T> {
    if prefix.chars().count() < T::MIN_PREFIX {
        bail!(
            "{} ID must contain at least {} characters",
            capitalised(T::NOUN),
            T::MIN_PREFIX
        );
    }
    let matches: Vec<T> = api
        .get_now(T::LIST, &[("prefix", prefix.to_string())])
        .await
        .map_err(|e| anyhow!("Error querying {}s: {e}", T::NOUN))?;
    choose(matches, prefix)
}

/// The exact match, or the only match, or an error listing the candidates.
fn choose<T: Listed>(mut matches: Vec<T>, prefix: &str) -> anyhow::Result<T> {
    if let Some(exact) = matches.iter().position(|m| m.id() == prefix) {
        return Ok(matches.swap_remove(exact));
    }
    match matches.len() {
        0 => bail!("No {}(s) with prefix or id {prefix:?} found", T::NOUN),
        1 => Ok(matches.swap_remove(0)),
        n => {
            let mut rows = vec![T::COLUMNS.iter().map(|c| c.to_string()).collect()];
            rows.extend(matches.iter().map(T::row));
            bail!(
                "Prefix {prefix:?} matched {n} {}s; give more of the ID:\n\n{}",
                T::NOUN,
                table(&rows).trim_end()
            )
        }
    }
}

fn capitalised(noun: &str) -> String {
    let mut chars = noun.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Thing {
        id: String,
        name: String,
    }

    impl Listed for Thing {
        const NOUN: &'static str = "node";
        const LIST: &'static str = "/v1/things";
        const MIN_PREFIX: usize = 1;
        const COLUMNS: &'static [&'static str] = &["ID", "Name"];
        fn id(&self) -> &str {
            &self.id
        }
        fn row(&self) -> Vec<String> {
            vec![self.id.clone(), self.name.clone()]
        }
    }

    fn node(id: &str, name: &str) -> Thing {
        Thing {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn an_exact_id_wins_and_an_ambiguous_prefix_lists_the_matches() {
        let nodes = vec![node("ab", "one"), node("abc", "two")];
        assert_eq!(choose(nodes, "ab").unwrap().name, "one");
        let nodes = vec![node("abc1", "one"), node("abc2", "two")];
        let e = choose(nodes, "abc").unwrap_err().to_string();
        assert!(e.contains("matched 2 nodes"), "{e}");
        assert!(e.contains("one") && e.contains("two"), "{e}");
        assert!(e.contains("ID"), "{e}");
        let e = choose(Vec::<Thing>::new(), "zz").unwrap_err().to_string();
        assert_eq!(e, "No node(s) with prefix or id \"zz\" found");
        assert_eq!(choose(vec![node("abc1", "x")], "a").unwrap().name, "x");
        assert_eq!(capitalised("allocation"), "Allocation");
    }
}
