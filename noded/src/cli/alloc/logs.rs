//! `noded alloc logs [-f] [-stderr] [-tail] [-n N] [-c B] [-job] ID [TASK]`.

use std::io::Write;

use anyhow::{anyhow, bail};
use base64::Engine;
use clap::Args;
use controlplane::model::{AllocListStub, Allocation};
use futures::StreamExt;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::job::fetch_job;
use super::super::Exit;
use super::{fetch_alloc, task_of};

/// Bytes read back from the end per line asked for with `-tail -n` (a guess; more are kept
/// than shown).
const TAIL_BYTES_PER_LINE: u64 = 512;
/// Bytes shown by `-tail` alone, or read at least for `-tail -n`.
const TAIL_DEFAULT_BYTES: u64 = 10 * 1024;
/// Lines shown by `-tail -n` when the count is left out.
const TAIL_DEFAULT_LINES: usize = 10;

#[derive(Debug, Args)]
pub struct AllocLogs {
    /// Follow new output.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Show stderr instead of stdout.
    #[arg(long)]
    stderr: bool,
    /// Start from the end.
    #[arg(long)]
    tail: bool,
    /// Lines to show with -tail.
    #[arg(short = 'n')]
    lines: Option<usize>,
    /// Bytes to show (with -tail: from the end).
    #[arg(short = 'c')]
    bytes: Option<u64>,
    /// ID is a job: pick one of its allocations.
    #[arg(long)]
    job: bool,
    id: String,
    task: Option<String>,
}

impl ApiCommand for AllocLogs {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = if self.job {
            alloc_of_job(api, &self.id).await?
        } else {
            fetch_alloc(api, &self.id).await?
        };
        let task = task_of(&alloc, self.task.as_deref())?;
        let response = api
            .stream(
                &format!("/v1/client/fs/logs/{}", alloc.id),
                &self.query(task),
            )
            .await
            .map_err(|e| anyhow!("Error reading logs: {e}"))?;
        self.copy_out(response).await?;
        Ok(Exit::Ok)
    }
}

impl AllocLogs {
    fn query(&self, task: String) -> Vec<(&'static str, String)> {
        // -tail with -n N: read a window from the end and keep the last N lines.
        let (origin, offset) = match (self.tail, self.bytes, self.lines) {
            (true, Some(b), _) => ("end", b),
            (true, None, Some(n)) => (
                "end",
                (n as u64)
                    .saturating_mul(TAIL_BYTES_PER_LINE)
                    .max(TAIL_DEFAULT_BYTES),
            ),
            (true, None, None) => ("end", TAIL_DEFAULT_BYTES),
            (false, Some(b), _) => ("start", b),
            (false, None, _) => ("start", 0),
        };
        let stream = if self.stderr { "stderr" } else { "stdout" };
        vec![
            ("task", task),
            ("type", stream.to_string()),
            ("follow", self.follow.to_string()),
            ("origin", origin.to_string()),
            ("offset", offset.to_string()),
        ]
    }

    /// Writes the frames' data to stdout; with `-tail -n`, only the last lines of the
    /// first window.
    async fn copy_out(&self, response: reqwest::Response) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout();
        let mut decoder = FrameDecoder::default();
        let lines = self.lines.unwrap_or(TAIL_DEFAULT_LINES);
        let mut pending_tail: Option<Vec<u8>> = (self.tail && self.lines.is_some()).then(Vec::new);
        let mut stream = response.bytes_stream();
        // With -tail -n and no follow, the whole window arrives before the stream ends.
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow!("Error reading logs: {e}"))?;
            for data in decoder.push(&chunk)? {
                match pending_tail.as_mut() {
                    Some(buf) if !self.follow => buf.extend_from_slice(&data),
                    Some(buf) => {
                        buf.extend_from_slice(&data);
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
            stdout.write_all(last_lines(&buf, lines))?;
        }
        Ok(())
    }
}

/// `-job`: the job's running allocation, else its first.
async fn alloc_of_job(api: &ApiClient, prefix: &str) -> anyhow::Result<Allocation> {
    let job = fetch_job(api, prefix).await?;
    let allocs: Vec<AllocListStub> = api
        .get_now(&format!("/v1/job/{}/allocations", urlencode(&job.id)), &[])
        .await
        .map_err(|e| anyhow!("Error querying allocations: {e}"))?;
    let pick = allocs
        .iter()
        .find(|a| a.client_status.as_str() == "running")
        .or_else(|| allocs.first())
        .ok_or_else(|| anyhow!("job {:?} has no allocations", job.id))?;
    fetch_alloc(api, &pick.id).await
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
