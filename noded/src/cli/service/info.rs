//! `noded service info [-verbose] [-json] [-filter] [-passing] NAME`: the name may be a
//! unique prefix, as in Nomad.

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::model::{ServiceRegistration, ServiceRegistrationListStub};

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::OutputArgs;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct ServiceInfo {
    /// Show every field of each instance, and each check's status.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// Only instances matching this filter expression (`Tags contains "v2"`).
    #[arg(long)]
    filter: Option<String>,
    /// Only instances whose checks all pass.
    #[arg(long)]
    passing: bool,
    /// At most this many per page.
    #[arg(long = "per-page")]
    per_page: Option<u32>,
    /// The page to start at (from the previous page's output).
    #[arg(long = "page-token")]
    page_token: Option<String>,
    /// The service's name, or a unique prefix of it.
    service_name: String,
}

/// Which service a prefix names: `(namespace, name)`, or the error to show.
pub(crate) fn pick(
    prefix: &str,
    all_namespaces: bool,
    list: &[ServiceRegistrationListStub],
) -> anyhow::Result<(String, String)> {
    let candidates: Vec<(&str, &str)> = list
        .iter()
        .flat_map(|ns| {
            ns.services
                .iter()
                .map(move |s| (ns.namespace.as_str(), s.service_name.as_str()))
        })
        .collect();
    let exact: Vec<&(&str, &str)> = candidates.iter().filter(|(_, n)| *n == prefix).collect();
    let chosen = match (candidates.as_slice(), exact.as_slice()) {
        ([], _) => bail!(
            "Error listing service registrations: No service registrations with prefix {prefix:?} found"
        ),
        ([one], _) => *one,
        (_, [one]) => **one,
        _ => bail!(
            "Prefix matched multiple services\n\n{}",
            super::render_list(all_namespaces, list).trim_end()
        ),
    };
    Ok((chosen.0.to_string(), chosen.1.to_string()))
}

impl ApiCommand for ServiceInfo {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let list: Vec<ServiceRegistrationListStub> = api
            .get_now("/v1/services", &[("prefix", self.service_name.clone())])
            .await
            .map_err(|e| anyhow!("Error listing service registrations: {e}"))?;
        let (namespace, name) = pick(&self.service_name, api.namespace() == "*", &list)?;
        // The later `namespace` wins over the global flag's (`*` resolved to the one found).
        let mut query: Vec<(&str, String)> = vec![("namespace", namespace)];
        for (key, value) in [
            ("filter", self.filter.clone()),
            ("next_token", self.page_token.clone()),
            ("per_page", self.per_page.map(|n| n.to_string())),
            ("passing", self.passing.then(|| "true".to_string())),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                query.push((key, v));
            }
        }
        let (services, next) = api
            .get_page::<Vec<ServiceRegistration>>(
                &format!("/v1/service/{}", urlencode(&name)),
                &query,
            )
            .await
            .map_err(|e| anyhow!("Error listing service registrations: {e}"))?;
        if services.is_empty() {
            println!("No service registrations found");
            return Ok(Exit::Ok);
        }
        if self.out.json {
            return self.out.print(&services, |_| String::new());
        }
        if self.verbose {
            print!("{}", super::render_info_verbose(&services));
        } else {
            print!("{}", super::render_info(&services));
        }
        if let Some(next) = next {
            println!(
                "\nResults have been paginated. To get the next page run:\n\nnoded service info -page-token {next} {name}"
            );
        }
        Ok(Exit::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::ServiceRegistrationStub;

    fn ns(namespace: &str, names: &[&str]) -> ServiceRegistrationListStub {
        ServiceRegistrationListStub {
            namespace: namespace.into(),
            services: names
                .iter()
                .map(|n| ServiceRegistrationStub {
                    service_name: n.to_string(),
                    tags: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_prefix_names_one_service_or_says_why_not() {
        let one = [ns("default", &["web"])];
        assert_eq!(
            pick("w", false, &one).unwrap(),
            ("default".into(), "web".into())
        );
        let two = [ns("default", &["web", "web-admin"])];
        assert_eq!(pick("web", false, &two).unwrap().1, "web");
        let e = pick("we", false, &two).unwrap_err().to_string();
        assert!(e.starts_with("Prefix matched multiple services\n\n"), "{e}");
        assert!(e.contains("web-admin"), "{e}");
        let e = pick("x", false, &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "Error listing service registrations: No service registrations with prefix \"x\" found"
        );
        let spread = [ns("default", &["web"]), ns("prod", &["web-x"])];
        assert_eq!(
            pick("web", true, &spread).unwrap(),
            ("default".into(), "web".into())
        );
    }
}
