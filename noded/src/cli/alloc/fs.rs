//! `noded alloc fs [-stat] [-f] [-tail] [-n LINES] [-c BYTES] [-job] [-group G] [-json] ID
//! [PATH]`: list a directory, print a file, or follow one, in the allocation directory, as
//! Nomad's `alloc fs`. Every request goes to the node that runs the allocation
//! ([`node_api`]).

use std::io::Write;

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::api::AllocFileInfo;
use futures::StreamExt;

use super::super::format::table;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::resolve::{node_api, NodeApi};
use super::super::Exit;
use super::frames::{last_lines, FrameDecoder};
use super::{alloc_of_job, fetch_alloc};

/// Lines `-tail` shows when neither `-n` nor `-c` is given (Nomad's `defaultTailLines`).
const DEFAULT_TAIL_LINES: u64 = 10;
/// Bytes read back per line asked for (Nomad's `bytesToLines`): lines are best effort.
const BYTES_PER_LINE: u64 = 120;

#[derive(Debug, Args)]
pub struct AllocFs {
    /// Show the file's or directory's details rather than its contents.
    #[arg(long)]
    stat: bool,
    /// Do not stop at the end of the file: wait for more output and print it (through
    /// /v1/client/fs/stream).
    #[arg(short = 'f')]
    follow: bool,
    /// Show the end of the file: the last 10 lines unless -n or -c says otherwise.
    #[arg(long)]
    tail: bool,
    /// With -tail: about this many lines from the end (best effort).
    #[arg(short = 'n')]
    lines: Option<u64>,
    /// With -tail: this many bytes from the end.
    #[arg(short = 'c')]
    bytes: Option<u64>,
    /// ID is a job: use one of its allocations (a running one when there is one).
    #[arg(long)]
    job: bool,
    /// With -job: an allocation of this task group.
    #[arg(long)]
    group: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
    /// The allocation (an ID or a unique prefix), or with -job the job.
    id: String,
    /// A path inside the allocation directory (default: its root).
    path: Option<String>,
}

/// How a file's contents are read, decided from the flags and the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPlan {
    /// The whole file (`/v1/client/fs/cat`).
    Cat,
    /// From `offset` bytes before the end to the end (`/v1/client/fs/readat`), then the
    /// last `lines` lines of that when given.
    Tail { offset: u64, lines: Option<u64> },
    /// Followed (`/v1/client/fs/stream`): from the start, or from `offset` bytes before the
    /// end with the last `lines` of that window first.
    Follow {
        from_end: bool,
        offset: u64,
        lines: Option<u64>,
    },
}

/// Nomad's rules: `-n` and `-c` exclude each other; `-tail` alone is 10 lines; a window is
/// never larger than the file.
fn read_plan(
    tail: bool,
    follow: bool,
    lines: Option<u64>,
    bytes: Option<u64>,
    size: u64,
) -> anyhow::Result<ReadPlan> {
    if !tail {
        return Ok(if follow {
            ReadPlan::Follow {
                from_end: false,
                offset: 0,
                lines: None,
            }
        } else {
            ReadPlan::Cat
        });
    }
    let (offset, lines) = match (lines, bytes) {
        (Some(_), Some(_)) => bail!("Both -n and -c are not allowed"),
        (Some(n), None) => (n.saturating_mul(BYTES_PER_LINE), Some(n)),
        (None, Some(c)) => (c, None),
        (None, None) => (
            DEFAULT_TAIL_LINES * BYTES_PER_LINE,
            Some(DEFAULT_TAIL_LINES),
        ),
    };
    let offset = offset.min(size);
    Ok(if follow {
        ReadPlan::Follow {
            from_end: true,
            offset,
            lines,
        }
    } else {
        ReadPlan::Tail { offset, lines }
    })
}

impl ApiCommand for AllocFs {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = if self.job {
            alloc_of_job(api, &self.id, self.group.as_deref()).await?
        } else {
            fetch_alloc(api, &self.id).await?
        };
        let node = node_api(api, &alloc).await?;
        let path = self.path.clone().unwrap_or_else(|| "/".to_string());
        let query = [("path", path.clone())];
        let info: AllocFileInfo = node
            .get_now(&format!("/v1/client/fs/stat/{}", alloc.id), &query)
            .await
            .map_err(|e| anyhow!("Error reading {path:?}: {e}"))?;
        if self.stat || (!info.is_dir && self.out.json) {
            return self.out.print(&info, |i| render(std::slice::from_ref(i)));
        }
        if info.is_dir {
            let entries: Vec<AllocFileInfo> = node
                .get_now(&format!("/v1/client/fs/ls/{}", alloc.id), &query)
                .await
                .map_err(|e| anyhow!("Error listing alloc dir: {e}"))?;
            return self.out.print(&entries, |e| render(e));
        }
        let plan = read_plan(self.tail, self.follow, self.lines, self.bytes, info.size)?;
        print_file(&node, &alloc.id, &path, info.size, plan).await?;
        Ok(Exit::Ok)
    }
}

async fn print_file(
    node: &NodeApi,
    alloc_id: &str,
    path: &str,
    size: u64,
    plan: ReadPlan,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    match plan {
        ReadPlan::Cat => {
            let response = node
                .stream(
                    &format!("/v1/client/fs/cat/{alloc_id}"),
                    &[("path", path.to_string())],
                )
                .await
                .map_err(|e| anyhow!("Error reading file: {e}"))?;
            copy_raw(response, &mut stdout).await
        }
        ReadPlan::Tail { offset, lines } => {
            let response = node
                .stream(
                    &format!("/v1/client/fs/readat/{alloc_id}"),
                    &[
                        ("path", path.to_string()),
                        ("offset", size.saturating_sub(offset).to_string()),
                        ("limit", "0".to_string()),
                    ],
                )
                .await
                .map_err(|e| anyhow!("Error tailing file: {e}"))?;
            match lines {
                None => copy_raw(response, &mut stdout).await,
                Some(n) => {
                    let window = response
                        .bytes()
                        .await
                        .map_err(|e| anyhow!("Error tailing file: {e}"))?;
                    stdout.write_all(last_lines(&window, line_count(n)))?;
                    Ok(())
                }
            }
        }
        ReadPlan::Follow {
            from_end,
            offset,
            lines,
        } => {
            let response = node
                .stream(
                    &format!("/v1/client/fs/stream/{alloc_id}"),
                    &[
                        ("path", path.to_string()),
                        ("origin", if from_end { "end" } else { "start" }.to_string()),
                        ("offset", offset.to_string()),
                        ("follow", "true".to_string()),
                    ],
                )
                .await
                .map_err(|e| anyhow!("Error tailing file: {e}"))?;
            let window = lines.map(|n| (offset, line_count(n)));
            copy_frames(response.bytes_stream(), window, &mut stdout).await
        }
    }
}

fn line_count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

async fn copy_raw(response: reqwest::Response, out: &mut impl Write) -> anyhow::Result<()> {
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk.map_err(|e| anyhow!("Error reading file: {e}"))?)?;
    }
    out.flush()?;
    Ok(())
}

/// Prints the frames' data as it arrives. With `window = (bytes, lines)`, the first `bytes`
/// are held back and only their last `lines` lines printed, then everything after them.
async fn copy_frames<E: std::fmt::Display>(
    mut body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    window: Option<(u64, usize)>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut decoder = FrameDecoder::default();
    let mut held: Option<(Vec<u8>, usize, usize)> =
        window
            .filter(|(bytes, _)| *bytes > 0)
            .map(|(bytes, lines)| {
                (
                    Vec::new(),
                    usize::try_from(bytes).unwrap_or(usize::MAX),
                    lines,
                )
            });
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| anyhow!("Error tailing file: {e}"))?;
        for data in decoder.push(&chunk)? {
            match held.as_mut() {
                Some((buf, want, lines)) => {
                    buf.extend_from_slice(&data);
                    if buf.len() >= *want {
                        let (first, rest) = buf.split_at(*want);
                        out.write_all(last_lines(first, *lines))?;
                        out.write_all(rest)?;
                        held = None;
                    }
                }
                None => out.write_all(&data)?,
            }
        }
        out.flush()?;
    }
    // The stream ended (the file was deleted) before the window filled.
    if let Some((buf, _, lines)) = held {
        out.write_all(last_lines(&buf, lines))?;
    }
    out.flush()?;
    Ok(())
}

/// `ls -l`-style rows; directories end in `/`.
fn render(entries: &[AllocFileInfo]) -> String {
    let mut rows = vec![["Mode", "Size", "Modified Time", "Name"]
        .map(String::from)
        .to_vec()];
    rows.extend(entries.iter().map(|e| {
        let name = if e.is_dir {
            format!("{}/", e.name)
        } else {
            e.name.clone()
        };
        vec![
            e.file_mode.clone(),
            e.size.to_string(),
            e.mod_time.clone(),
            name,
        ]
    }));
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_choose_how_a_file_is_read_as_nomad_does() {
        assert_eq!(
            read_plan(false, false, None, None, 5000).unwrap(),
            ReadPlan::Cat
        );
        assert_eq!(
            read_plan(false, true, None, None, 5000).unwrap(),
            ReadPlan::Follow {
                from_end: false,
                offset: 0,
                lines: None
            }
        );
        assert_eq!(
            read_plan(true, false, None, None, 5000).unwrap(),
            ReadPlan::Tail {
                offset: 1200,
                lines: Some(10)
            }
        );
        assert_eq!(
            read_plan(true, false, Some(3), None, 5000).unwrap(),
            ReadPlan::Tail {
                offset: 360,
                lines: Some(3)
            }
        );
        assert_eq!(
            read_plan(true, true, None, Some(64), 5000).unwrap(),
            ReadPlan::Follow {
                from_end: true,
                offset: 64,
                lines: None
            }
        );
        // A window never reaches before the start of the file.
        assert_eq!(
            read_plan(true, false, None, Some(64), 10).unwrap(),
            ReadPlan::Tail {
                offset: 10,
                lines: None
            }
        );
        let e = read_plan(true, false, Some(1), Some(1), 10).unwrap_err();
        assert_eq!(e.to_string(), "Both -n and -c are not allowed");
    }

    #[test]
    fn a_followed_tail_shows_the_last_lines_of_its_window_then_everything() {
        let frame = |s: &str| {
            use base64::Engine;
            format!(
                r#"{{"Data":"{}","File":"f"}}"#,
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        // A 12-byte window ("a\nb\nc\nd\ne\nf\n") arrives in two frames, then new output.
        let body = format!(
            "{}{{}}{}{}",
            frame("a\nb\nc\n"),
            frame("d\ne\nf\ng"),
            frame("\nh\n")
        );
        // Split anywhere, as the transport may.
        let (x, y) = body.split_at(10);
        let chunks = futures::stream::iter([
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(x.to_string())),
            Ok(bytes::Bytes::from(y.to_string())),
        ]);
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(copy_frames(chunks, Some((12, 2)), &mut out))
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "e\nf\ng\nh\n");
    }
}
