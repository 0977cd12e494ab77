//! `noded alloc ...`.

use std::io::Write;

use anyhow::{anyhow, bail};
use base64::Engine;
use controlplane::model::{AllocListStub, Allocation, TaskState};
use futures::StreamExt;

use super::format::{ago, json, kv, or_none, short, table, timestamp};
use super::http::ApiClient;
use super::job::{resolve_job, urlencode};
use super::{Exit, Output};

/// Finds an allocation by exact id or unique prefix.
pub async fn resolve_alloc(api: &ApiClient, id: &str) -> anyhow::Result<Allocation> {
    if id.len() < 2 {
        bail!("Alloc ID must contain at least two characters");
    }
    let matches: Vec<AllocListStub> = api
        .get_now("/v1/allocations", &[("prefix", id.to_string())])
        .await
        .map_err(|e| anyhow!("Error querying allocations: {e}"))?;
    let chosen = match matches.len() {
        0 => bail!("No allocation(s) with prefix or id {id:?} found"),
        1 => matches[0].id.clone(),
        _ => {
            let mut rows = vec![
                ["ID", "Eval ID", "Job ID", "Task Group", "Desired", "Status"]
                    .map(String::from)
                    .to_vec(),
            ];
            for a in &matches {
                rows.push(vec![
                    short(&a.id),
                    short(&a.eval_id),
                    a.job_id.clone(),
                    a.task_group.clone(),
                    a.desired_status.as_str().into(),
                    a.client_status.as_str().into(),
                ]);
            }
            bail!("Prefix matched multiple allocations\n\n{}", table(&rows))
        }
    };
    api.get_now(&format!("/v1/allocation/{chosen}"), &[])
        .await
        .map_err(|e| anyhow!("Error querying allocation: {e}"))
}

fn task_time(t: &Option<String>) -> String {
    t.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .unwrap_or_else(|| "N/A".to_string())
}

pub async fn status(api: &ApiClient, id: &str, stats: bool, out: Output) -> anyhow::Result<Exit> {
    let alloc = resolve_alloc(api, id).await?;
    let usage: Option<serde_json::Value> = if stats {
        match api
            .get_now::<serde_json::Value>(&format!("/v1/client/allocation/{}/stats", alloc.id), &[])
            .await
        {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("Couldn't retrieve stats: {e}");
                None
            }
        }
    } else {
        None
    };
    if out.json {
        let mut v = serde_json::to_value(&alloc)?;
        if let Some(u) = usage {
            v["Stats"] = u;
        }
        println!("{}", json(&v)?);
        return Ok(Exit::Ok);
    }
    print!(
        "{}",
        kv(&[
            ("ID", alloc.id.clone()),
            ("Eval ID", short(&alloc.eval_id)),
            ("Name", alloc.name.clone()),
            ("Node ID", short(&alloc.node_id)),
            ("Node Name", alloc.node_name.clone()),
            ("Job ID", alloc.job_id.clone()),
            ("Job Version", alloc.job_version().to_string()),
            ("Client Status", alloc.client_status.as_str().into()),
            ("Client Description", or_none(&alloc.client_description)),
            ("Desired Status", alloc.desired_status.as_str().into()),
            ("Desired Description", or_none(&alloc.desired_description)),
            ("Created", ago(alloc.create_time)),
            ("Modified", ago(alloc.modify_time)),
        ])
    );
    let group = alloc
        .job
        .as_ref()
        .and_then(|j| j.group(&alloc.task_group).cloned());
    let mut names: Vec<&String> = alloc.task_states.keys().collect();
    if names.is_empty() {
        if let Some(g) = &group {
            println!(
                "\nNo task has reported yet ({} task(s) in group {:?})",
                g.tasks.len(),
                g.name
            );
        }
    }
    names.sort();
    for name in names {
        let state: &TaskState = &alloc.task_states[name];
        println!("\nTask \"{name}\" is \"{}\"", state.state.as_str());
        let res = group
            .as_ref()
            .and_then(|g| g.task(name))
            .and_then(|t| t.resources.clone())
            .unwrap_or_default();
        println!("Task Resources:");
        let task_usage = usage
            .as_ref()
            .and_then(|u| u["Tasks"].get(name.as_str()))
            .map(|t| &t["ResourceUsage"]);
        let (cpu, mem) = match task_usage {
            Some(u) => (
                format!(
                    "{:.0}/{} MHz",
                    u["CpuStats"]["TotalTicks"].as_f64().unwrap_or(0.0),
                    res.cpu
                ),
                format!(
                    "{}/{} MiB",
                    human_mib(u["MemoryStats"]["RSS"].as_u64().unwrap_or(0)),
                    res.memory_mb
                ),
            ),
            None => (format!("{} MHz", res.cpu), format!("{} MiB", res.memory_mb)),
        };
        print!(
            "{}",
            table(&[vec!["CPU".into(), "Memory".into()], vec![cpu, mem]])
        );
        if let Some(u) = task_usage {
            println!("\nMemory Stats");
            print!(
                "{}",
                table(&[
                    vec![
                        "Cache".into(),
                        "RSS".into(),
                        "Usage".into(),
                        "Max Usage".into()
                    ],
                    vec![
                        format!(
                            "{} MiB",
                            human_mib(u["MemoryStats"]["Cache"].as_u64().unwrap_or(0))
                        ),
                        format!(
                            "{} MiB",
                            human_mib(u["MemoryStats"]["RSS"].as_u64().unwrap_or(0))
                        ),
                        format!(
                            "{} MiB",
                            human_mib(u["MemoryStats"]["Usage"].as_u64().unwrap_or(0))
                        ),
                        format!(
                            "{} MiB",
                            human_mib(u["MemoryStats"]["MaxUsage"].as_u64().unwrap_or(0))
                        ),
                    ],
                ])
            );
            println!("\nCPU Stats");
            print!(
                "{}",
                table(&[
                    vec![
                        "Percent".into(),
                        "System Mode".into(),
                        "User Mode".into(),
                        "Throttled Periods".into(),
                        "Throttled Time".into()
                    ],
                    vec![
                        format!("{:.2}%", u["CpuStats"]["Percent"].as_f64().unwrap_or(0.0)),
                        format!(
                            "{:.0} ms",
                            u["CpuStats"]["SystemMode"].as_f64().unwrap_or(0.0)
                        ),
                        format!(
                            "{:.0} ms",
                            u["CpuStats"]["UserMode"].as_f64().unwrap_or(0.0)
                        ),
                        u["CpuStats"]["ThrottledPeriods"].to_string(),
                        u["CpuStats"]["ThrottledTime"].to_string(),
                    ],
                ])
            );
        }
        println!("\nTask Events:");
        print!(
            "{}",
            kv(&[
                ("Started At", task_time(&state.started_at)),
                ("Finished At", task_time(&state.finished_at)),
                ("Total Restarts", state.restarts.to_string()),
                ("Last Restart", task_time(&state.last_restart)),
            ])
        );
        println!("\nRecent Events:");
        let mut rows = vec![vec![
            "Time".to_string(),
            "Type".into(),
            "Description".into(),
        ]];
        for e in state.events.iter().rev() {
            rows.push(vec![
                timestamp(e.time),
                e.event_type.clone(),
                e.display_message.clone(),
            ]);
        }
        print!("{}", table(&rows));
    }
    Ok(Exit::Ok)
}

fn human_mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

#[derive(Debug, Clone, Copy)]
pub struct LogsOptions {
    pub follow: bool,
    pub stderr: bool,
    pub tail: bool,
    pub lines: Option<usize>,
    pub bytes: Option<u64>,
    pub job: bool,
}

pub async fn logs(
    api: &ApiClient,
    id: &str,
    task: Option<&str>,
    opts: LogsOptions,
) -> anyhow::Result<Exit> {
    let alloc = if opts.job {
        let job = resolve_job(api, id).await?;
        let allocs: Vec<AllocListStub> = api
            .get_now(&format!("/v1/job/{}/allocations", urlencode(&job.id)), &[])
            .await
            .map_err(|e| anyhow!("Error querying allocations: {e}"))?;
        let pick = allocs
            .iter()
            .find(|a| a.client_status.as_str() == "running")
            .or_else(|| allocs.first())
            .ok_or_else(|| anyhow!("job {:?} has no allocations", job.id))?;
        resolve_alloc(api, &pick.id).await?
    } else {
        resolve_alloc(api, id).await?
    };
    let task = match task {
        Some(t) => t.to_string(),
        None => {
            let group = alloc.job.as_ref().and_then(|j| j.group(&alloc.task_group));
            let tasks: Vec<String> = group
                .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect())
                .unwrap_or_default();
            match tasks.as_slice() {
                [one] => one.clone(),
                [] => bail!("allocation {} has no tasks", short(&alloc.id)),
                many => bail!(
                    "allocation {} has several tasks; name one: {}",
                    short(&alloc.id),
                    many.join(", ")
                ),
            }
        }
    };
    // -tail with -n N: read a window from the end and keep the last N lines.
    let (origin, offset) = match (opts.tail, opts.bytes, opts.lines) {
        (true, Some(b), _) => ("end", b),
        (true, None, Some(n)) => ("end", (n as u64).saturating_mul(512).max(4096)),
        (true, None, None) => ("end", 10 * 1024),
        (false, Some(b), _) => ("start", b),
        (false, None, _) => ("start", 0),
    };
    let query = vec![
        ("task", task.clone()),
        (
            "type",
            if opts.stderr { "stderr" } else { "stdout" }.to_string(),
        ),
        ("follow", opts.follow.to_string()),
        ("origin", origin.to_string()),
        ("offset", offset.to_string()),
    ];
    let response = api
        .stream(&format!("/v1/client/fs/logs/{}", alloc.id), &query)
        .await
        .map_err(|e| anyhow!("Error reading logs: {e}"))?;
    let mut stdout = std::io::stdout();
    let mut decoder = FrameDecoder::default();
    let mut pending_tail: Option<Vec<u8>> = if opts.tail && opts.lines.is_some() {
        Some(Vec::new())
    } else {
        None
    };
    let mut stream = response.bytes_stream();
    // With -tail -n and no follow, the whole window arrives before the stream ends.
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| anyhow!("Error reading logs: {e}"))?;
        for data in decoder.push(&chunk)? {
            match pending_tail.as_mut() {
                Some(buf) if !opts.follow => buf.extend_from_slice(&data),
                Some(buf) => {
                    buf.extend_from_slice(&data);
                    let lines = opts.lines.unwrap_or(10);
                    stdout.write_all(last_lines(buf, lines))?;
                    stdout.flush()?;
                    pending_tail = None;
                }
                None => {
                    stdout.write_all(&data)?;
                    stdout.flush()?;
                }
            }
        }
    }
    if let Some(buf) = pending_tail {
        stdout.write_all(last_lines(&buf, opts.lines.unwrap_or(10)))?;
    }
    Ok(Exit::Ok)
}

fn last_lines(buf: &[u8], n: usize) -> &[u8] {
    let mut count = 0;
    let end = if buf.ends_with(b"\n") {
        buf.len() - 1
    } else {
        buf.len()
    };
    for i in (0..end).rev() {
        if buf[i] == b'\n' {
            count += 1;
            if count == n {
                return &buf[i + 1..];
            }
        }
    }
    buf
}

/// Splits the concatenated JSON `StreamFrame`s of the logs endpoint.
#[derive(Default)]
struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut it =
                serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
            loop {
                match it.next() {
                    Some(Ok(frame)) => {
                        consumed = it.byte_offset();
                        if let Some(data) = frame.get("Data").and_then(|d| d.as_str()) {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(data)
                                .map_err(|e| anyhow!("malformed log frame: {e}"))?;
                            out.push(bytes);
                        }
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => bail!("malformed log stream from the agent: {e}"),
                    None => break,
                }
            }
        }
        self.buf.drain(..consumed);
        Ok(out)
    }
}

/// `alloc signal [-s SIGNAL] [-task T] ALLOC [TASK]`.
pub async fn signal(
    api: &ApiClient,
    id: &str,
    task: Option<&str>,
    signal: &str,
) -> anyhow::Result<Exit> {
    let alloc = resolve_alloc(api, id).await?;
    let body = serde_json::json!({ "Task": task.unwrap_or(""), "Signal": signal });
    let _: serde_json::Value = api
        .put(&format!("/v1/client/allocation/{}/signal", alloc.id), &body)
        .await
        .map_err(|e| anyhow!("Error signaling allocation: {e}"))?;
    println!("Sent {signal} to allocation {}", short(&alloc.id));
    Ok(Exit::Ok)
}

/// `alloc restart [-task T] ALLOC [TASK]`.
pub async fn restart(api: &ApiClient, id: &str, task: Option<&str>) -> anyhow::Result<Exit> {
    let alloc = resolve_alloc(api, id).await?;
    let body = serde_json::json!({ "TaskName": task.unwrap_or(""), "AllTasks": false });
    let _: serde_json::Value = api
        .put(
            &format!("/v1/client/allocation/{}/restart", alloc.id),
            &body,
        )
        .await
        .map_err(|e| anyhow!("Error restarting allocation: {e}"))?;
    println!(
        "Restarted {} of allocation {}",
        task.map(|t| format!("task {t:?}"))
            .unwrap_or_else(|| "every running task".into()),
        short(&alloc.id)
    );
    Ok(Exit::Ok)
}

/// `alloc fs [-stat] ALLOC [PATH]`: lists a directory or prints a file of the allocation.
pub async fn fs(
    api: &ApiClient,
    id: &str,
    path: Option<&str>,
    stat_only: bool,
    out: Output,
) -> anyhow::Result<Exit> {
    let alloc = resolve_alloc(api, id).await?;
    let path = path.unwrap_or("/").to_string();
    let info: controlplane::api::AllocFileInfo = api
        .get_now(
            &format!("/v1/client/fs/stat/{}", alloc.id),
            &[("path", path.clone())],
        )
        .await
        .map_err(|e| anyhow!("Error reading {path:?}: {e}"))?;
    if stat_only || !info.is_dir && out.json {
        if out.json {
            println!("{}", json(&info)?);
        } else {
            print!(
                "{}",
                table(&[
                    vec![
                        "Mode".into(),
                        "Size".into(),
                        "Modified Time".into(),
                        "Name".into()
                    ],
                    vec![
                        info.file_mode.clone(),
                        info.size.to_string(),
                        info.mod_time.clone(),
                        info.name.clone()
                    ],
                ])
            );
        }
        return Ok(Exit::Ok);
    }
    if info.is_dir {
        let entries: Vec<controlplane::api::AllocFileInfo> = api
            .get_now(
                &format!("/v1/client/fs/ls/{}", alloc.id),
                &[("path", path.clone())],
            )
            .await
            .map_err(|e| anyhow!("Error listing {path:?}: {e}"))?;
        if out.json {
            println!("{}", json(&entries)?);
            return Ok(Exit::Ok);
        }
        let mut rows = vec![vec![
            "Mode".to_string(),
            "Size".into(),
            "Modified Time".into(),
            "Name".into(),
        ]];
        for e in &entries {
            let name = if e.is_dir {
                format!("{}/", e.name)
            } else {
                e.name.clone()
            };
            rows.push(vec![
                e.file_mode.clone(),
                e.size.to_string(),
                e.mod_time.clone(),
                name,
            ]);
        }
        print!("{}", table(&rows));
        return Ok(Exit::Ok);
    }
    let response = api
        .stream(
            &format!("/v1/client/fs/cat/{}", alloc.id),
            &[("path", path.clone())],
        )
        .await
        .map_err(|e| anyhow!("Error reading {path:?}: {e}"))?;
    let bytes = response
        .bytes()
        .await
        .map_err(|e| anyhow!("Error reading {path:?}: {e}"))?;
    std::io::stdout().write_all(&bytes)?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_are_decoded() {
        let mut d = FrameDecoder::default();
        let a = br#"{"Offset":0,"Data":"aGVs","File":"x"}{"Offset":3,"Da"#;
        assert_eq!(d.push(a).unwrap(), vec![b"hel".to_vec()]);
        assert_eq!(
            d.push(br#"ta":"bG8=","File":"x"}"#).unwrap(),
            vec![b"lo".to_vec()]
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\n", 5), b"a\n");
    }
}
