//! `noded alloc logs [-f] [-stderr] [-tail] [-n N] [-c B] [-job] ID [TASK]`.

use std::io::Write;

use anyhow::anyhow;
use clap::Args;
use futures::StreamExt;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::resolve::node_api;
use super::super::Exit;
use super::frames::{last_lines, FrameDecoder};
use super::{alloc_of_job, fetch_alloc, task_of};

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
    /// ID is a job: pick one of its allocations (a running one when there is one).
    #[arg(long)]
    job: bool,
    /// With -job: an allocation of this task group.
    #[arg(long)]
    group: Option<String>,
    id: String,
    task: Option<String>,
}

impl ApiCommand for AllocLogs {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = if self.job {
            alloc_of_job(api, &self.id, self.group.as_deref()).await?
        } else {
            fetch_alloc(api, &self.id).await?
        };
        let task = task_of(&alloc, self.task.as_deref())?;
        let response = node_api(api, &alloc)
            .await?
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
