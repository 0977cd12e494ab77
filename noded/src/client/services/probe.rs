//! The probes a check runs: `http`, `tcp`, `grpc` (grpc.health.v1) and `script`. Each gives
//! an [`Outcome`] within its timeout and never fails otherwise: what went wrong is the
//! outcome's output, the status critical.
//!
//! Network probes connect from where the check says ([`Endpoint::netns`]): a socket is made on
//! a thread that entered the allocation's network namespace, so a port the allocation never
//! mapped to the host can be checked; the connected socket is then handed to tokio (a socket
//! stays in the namespace it was made in).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use controlplane::model::{HealthStatus, MAX_CHECK_OUTPUT};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::status::{cut_output, Outcome};
use crate::supervisor::client::{ExecHandle, SupervisorClient};
use crate::supervisor::protocol::{Request, Response};

/// Where a network probe connects, and from which network namespace (`None`: the agent's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP address or a host name (resolved from the agent's namespace).
    pub host: String,
    pub port: u16,
    /// The name of a network namespace under `/run/netns`.
    pub netns: Option<String>,
}

impl Endpoint {
    /// `host:port`, bracketed for IPv6, as a `Host` header or URL authority wants it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An `http` check's request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// `GET` when empty.
    pub method: String,
    /// Path and query; `/` when empty.
    pub path: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
    /// `https` when true.
    pub tls: bool,
    pub tls_skip_verify: bool,
    /// The name the server's certificate is checked for (the host when empty).
    pub tls_server_name: String,
}

/// A `grpc` check's request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrpcRequest {
    /// The service asked about (`""`: the server as a whole).
    pub service: String,
    pub tls: bool,
    pub tls_skip_verify: bool,
    pub tls_server_name: String,
}

/// What a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Tcp(Endpoint),
    Http(Endpoint, HttpRequest),
    Grpc(Endpoint, GrpcRequest),
    /// `command` and `args`, run inside task `task_id` (`<alloc>.<task>`) through the
    /// supervisor, as `alloc exec` does.
    Script {
        task_id: String,
        command: Vec<String>,
    },
}

impl Probe {
    /// Runs the probe; `timeout` bounds all of it.
    pub async fn run(&self, timeout: Duration, supervisor: &SupervisorClient) -> Outcome {
        use futures::FutureExt;
        let work = match self {
            // Bounds itself: on timeout the script is killed, not only abandoned.
            Probe::Script { task_id, command } => {
                return script(supervisor, task_id, command, timeout).await
            }
            Probe::Tcp(endpoint) => tcp(endpoint, timeout).boxed(),
            Probe::Http(endpoint, request) => http(endpoint, request, timeout).boxed(),
            Probe::Grpc(endpoint, request) => grpc(endpoint, request, timeout).boxed(),
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::new(
                HealthStatus::Critical,
                format!("check timed out after {}", humanize(timeout)),
            ),
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Opens a TCP connection to `endpoint` from its namespace within `timeout`.
pub async fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let addrs: Vec<SocketAddr> = match endpoint.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, endpoint.port)],
        Err(_) => tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", endpoint.host))?
            .collect(),
    };
    let Some(addr) = addrs.first().copied() else {
        return Err(format!("{} resolves to no address", endpoint.host));
    };
    let stream = match &endpoint.netns {
        None => tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("dial tcp {addr}: i/o timeout"))?
            .map_err(|e| format!("dial tcp {addr}: {e}"))?,
        Some(name) => {
            let name = name.clone();
            // The connect blocks a thread of its own inside the namespace (bounded by the
            // timeout); the socket then joins tokio's reactor in this namespace's process.
            let std_stream = tokio::task::spawn_blocking(move || {
                netns::namespace::run_in(&name, || {
                    std::net::TcpStream::connect_timeout(&addr, timeout)
                })
            })
            .await
            .map_err(|e| format!("dial tcp {addr}: {e}"))?
            .map_err(|e| format!("entering network namespace: {e}"))?
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
            std_stream
                .set_nonblocking(true)
                .map_err(|e| format!("dial tcp {addr}: {e}"))?;
            tokio::net::TcpStream::from_std(std_stream)
                .map_err(|e| format!("dial tcp {addr}: {e}"))?
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn tcp(endpoint: &Endpoint, timeout: Duration) -> Outcome {
    match connect(endpoint, timeout).await {
        Ok(_) => Outcome::new(
            HealthStatus::Passing,
            format!("TCP connect {}: Success", endpoint.authority()),
        ),
        Err(e) => Outcome::new(HealthStatus::Critical, e),
    }
}

/// Consul's reading of an HTTP status: 2xx passing, 429 (Too Many Requests) warning, anything
/// else critical.
pub fn http_status(code: u16) -> HealthStatus {
    match code {
        200..=299 => HealthStatus::Passing,
        429 => HealthStatus::Warning,
        _ => HealthStatus::Critical,
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The connection, wrapped in TLS when asked (`alpn` offered: `h2` for gRPC).
async fn open(
    endpoint: &Endpoint,
    timeout: Duration,
    tls: bool,
    skip_verify: bool,
    server_name: &str,
    alpn: &[&[u8]],
) -> Result<Box<dyn Io>, String> {
    let stream = connect(endpoint, timeout).await?;
    if !tls {
        return Ok(Box::new(stream));
    }
    let config = tls_config(skip_verify, alpn)?;
    let name = if server_name.is_empty() {
        endpoint.host.as_str()
    } else {
        server_name
    };
    let name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("TLS server name {name:?}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {}: {e}", endpoint.authority()))?;
    Ok(Box::new(stream))
}

/// The system's trust anchors (Debian's bundle), read once per check run: checks are seconds
/// apart and the file is small.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// ring, the provider the rest of the workspace uses (see `federation::tls`: deprecated in
/// rustls 0.23.48 for lacking post-quantum key exchange, which a health check does not need).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(skip_verify: bool, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?;
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(SYSTEM_ROOTS)
            .map_err(|e| format!("reading trust anchors {SYSTEM_ROOTS}: {e} (install ca-certificates, or set tls_skip_verify)"))?;
        for cert in certs.flatten() {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// `tls_skip_verify`: any certificate is accepted (signatures are still checked, so the
/// handshake is a real one).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads at most [`MAX_CHECK_OUTPUT`] bytes of a body (the rest is not read).
async fn read_capped<B>(mut body: B) -> Result<(Vec<u8>, Option<hyper::HeaderMap>), String>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut out = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
        match frame.into_data() {
            Ok(data) => {
                let room = MAX_CHECK_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&data[..data.len().min(room)]);
                if out.len() >= MAX_CHECK_OUTPUT {
                    break;
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok((out, trailers))
}

async fn http(endpoint: &Endpoint, request: &HttpRequest, timeout: Duration) -> Outcome {
    let method = if request.method.is_empty() {
        "GET"
    } else {
        request.method.as_str()
    };
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path.as_str()
    };
    let scheme = if request.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}{path}", endpoint.authority());
    let critical =
        |e: String| Outcome::new(HealthStatus::Critical, format!("HTTP {method} {url}: {e}"));
    let io = match open(
        endpoint,
        timeout,
        request.tls,
        request.tls_skip_verify,
        &request.tls_server_name,
        &[b"http/1.1"],
    )
    .await
    {
        Ok(io) => io,
        Err(e) => return critical(e),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(pair) => pair,
        Err(e) => return critical(e.to_string()),
    };
    // The connection is driven until the request is answered; dropped with this future.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let _abort = AbortOnDrop(driver);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, endpoint.authority())
        .header(hyper::header::USER_AGENT, "noded health check");
    let mut has_host = false;
    for (name, values) in &request.headers {
        if name.eq_ignore_ascii_case("host") {
            has_host = true;
        }
        for value in values {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    if has_host {
        // The check's own Host header wins over the address's (Consul's behaviour).
        if let Some(headers) = builder.headers_mut() {
            let mine: Vec<_> = headers
                .get_all(hyper::header::HOST)
                .iter()
                .skip(1)
                .cloned()
                .collect();
            headers.remove(hyper::header::HOST);
            for v in mine {
                headers.append(hyper::header::HOST, v);
            }
        }
    }
    let req = match builder.body(Full::new(Bytes::from(request.body.clone()))) {
        Ok(r) => r,
        Err(e) => return critical(format!("building the request: {e}")),
    };
    let response = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return critical(e.to_string()),
    };
    let status = response.status();
    let body = match read_capped(response.into_body()).await {
        Ok((body, _)) => String::from_utf8_lossy(&body).into_owned(),
        Err(e) => return critical(e),
    };
    let mut outcome = Outcome::new(
        http_status(status.as_u16()),
        format!("HTTP {method} {url}: {status} Output: {body}"),
    );
    outcome.status_code = status.as_u16();
    outcome
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `grpc.health.v1.HealthCheckRequest { service }` in protobuf, framed for gRPC.
pub fn grpc_health_request(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = vec![0u8]; // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in data.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The serving status of a framed `HealthCheckResponse` (0 UNKNOWN, 1 SERVING, 2 NOT_SERVING,
/// 3 SERVICE_UNKNOWN); `None` when the bytes are not one.
pub fn grpc_health_status(framed: &[u8]) -> Option<u64> {
    let len = u32::from_be_bytes(framed.get(1..5)?.try_into().ok()?) as usize;
    let mut message = framed.get(5..5 + len)?;
    let mut status = 0;
    while !message.is_empty() {
        let (key, n) = get_varint(message)?;
        message = &message[n..];
        match key & 7 {
            0 => {
                let (v, n) = get_varint(message)?;
                message = &message[n..];
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let (l, n) = get_varint(message)?;
                message = message.get(n + usize::try_from(l).ok()?..)?;
            }
            _ => return None,
        }
    }
    Some(status)
}

fn grpc_status_name(status: u64) -> &'static str {
    match status {
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

async fn grpc(endpoint: &Endpoint, request: &GrpcRequest, timeout: Duration) -> Outcome {
    let what = if request.service.is_empty() {
        endpoint.authority()
    } else {
        format!("{}/{}", endpoint.authority(), request.service)
    };
    let critical =
        |e: String| Outcome::new(HealthStatus::Critical, format!("gRPC check {what}: {e}"));
    let io = match open(
        endpoint,
        timeout,
        request.tls,
        request.tls_skip_verify,
        &request.tls_server_name,
        &[b"h2"],
    )
    .await
    {
        Ok(io) => io,
        Err(e) => return critical(e),
    };
    let (mut sender, conn) =
        match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await {
            Ok(pair) => pair,
            Err(e) => return critical(e.to_string()),
        };
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let _abort = AbortOnDrop(driver);
    let scheme = if request.tls { "https" } else { "http" };
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!(
            "{scheme}://{}/grpc.health.v1.Health/Check",
            endpoint.authority()
        ))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(grpc_health_request(
            &request.service,
        ))));
    let req = match req {
        Ok(r) => r,
        Err(e) => return critical(format!("building the request: {e}")),
    };
    let response = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return critical(e.to_string()),
    };
    if !response.status().is_success() {
        return critical(format!("HTTP/2 status {}", response.status()));
    }
    let headers = response.headers().clone();
    let (body, trailers) = match read_capped(response.into_body()).await {
        Ok(b) => b,
        Err(e) => return critical(e),
    };
    // A trailers-only answer carries grpc-status in the headers.
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    if grpc_status != "0" {
        let message = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return critical(format!("rpc error: code = {grpc_status} desc = {message}"));
    }
    match grpc_health_status(&body) {
        Some(1) => Outcome::new(HealthStatus::Passing, format!("gRPC check {what}: success")),
        Some(other) => critical(format!("status {}", grpc_status_name(other))),
        None => critical("the answer is not a grpc.health.v1 HealthCheckResponse".into()),
    }
}

/// Consul's reading of a script's exit code: 0 passing, 1 warning, anything else critical.
pub fn script_status(exit_code: i32) -> HealthStatus {
    match exit_code {
        0 => HealthStatus::Passing,
        1 => HealthStatus::Warning,
        _ => HealthStatus::Critical,
    }
}

async fn script(
    supervisor: &SupervisorClient,
    task_id: &str,
    command: &[String],
    timeout: Duration,
) -> Outcome {
    let ExecHandle { exec_id, pid, fds } =
        match supervisor.exec(task_id, command.to_vec(), false).await {
            Ok(h) => h,
            Err(e) => {
                return Outcome::new(
                    HealthStatus::Critical,
                    format!("running {:?} in task {task_id}: {e}", command.join(" ")),
                )
            }
        };
    // stdin, stdout, stderr: stdin is closed at once (a check reads nothing).
    let mut fds = fds.into_iter();
    drop(fds.next());
    let readers: Vec<_> = fds
        .filter_map(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
        .collect();
    let run = async {
        // Both streams at once, each to its end: a script blocked writing one pipe while the
        // other is read would only end at the timeout.
        let outputs = futures::future::join_all(readers.into_iter().map(read_all_capped)).await;
        let output: Vec<u8> = outputs.concat();
        let exit = supervisor
            .call(&Request::ExecWait {
                exec_id: exec_id.clone(),
            })
            .await;
        (output, exit)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((output, Ok(Response::Exited { exit }))) => Outcome::new(
            script_status(exit.exit_code),
            cut_output(String::from_utf8_lossy(&output).into_owned()),
        ),
        Ok((_, Ok(other))) => Outcome::new(
            HealthStatus::Critical,
            format!("waiting for the check script: unexpected answer {other:?}"),
        ),
        Ok((_, Err(e))) => Outcome::new(
            HealthStatus::Critical,
            format!("waiting for the check script: {e}"),
        ),
        Err(_) => {
            // Consul kills a script that outlives its timeout; the supervisor still reaps it
            // and forgets the session when its wait below is answered.
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let supervisor = supervisor.clone();
            tokio::spawn(async move {
                let _ = supervisor.call(&Request::ExecWait { exec_id }).await;
            });
            Outcome::new(
                HealthStatus::Critical,
                format!("check script timed out after {}", humanize(timeout)),
            )
        }
    }
}

/// Reads `r` to its end, keeping the first [`MAX_CHECK_OUTPUT`] bytes.
async fn read_all_capped(mut r: tokio::net::unix::pipe::Receiver) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_CHECK_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn supervisor() -> SupervisorClient {
        SupervisorClient::new(std::path::PathBuf::from(
            "/nonexistent/noded-test/supervisor.sock",
        ))
    }

    fn local(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            netns: None,
        }
    }

    /// A one-shot HTTP/1.1 server answering `status` with `body`; the request it read comes
    /// back through the channel.
    async fn http_server(
        status: &'static str,
        body: &'static str,
    ) -> (u16, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // Headers, then the body Content-Length announces.
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&got).to_string()).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn http_reads_2xx_as_passing_429_as_warning_and_the_rest_as_critical() {
        for (status, want) in [
            ("200 OK", HealthStatus::Passing),
            ("204 No Content", HealthStatus::Passing),
            ("429 Too Many Requests", HealthStatus::Warning),
            ("500 Internal Server Error", HealthStatus::Critical),
            ("404 Not Found", HealthStatus::Critical),
        ] {
            let (port, _rx) = http_server(status, "").await;
            let probe = Probe::Http(
                local(port),
                HttpRequest {
                    path: "/health".into(),
                    ..Default::default()
                },
            );
            let out = probe.run(Duration::from_secs(5), &supervisor()).await;
            assert_eq!(out.status, want, "{status}: {out:?}");
            assert_eq!(out.status_code, status[..3].parse::<u16>().unwrap());
            assert!(
                out.output
                    .contains(&format!("http://127.0.0.1:{port}/health")),
                "{out:?}"
            );
        }
    }

    #[tokio::test]
    async fn http_sends_the_checks_method_path_headers_and_body() {
        let (port, mut rx) = http_server("200 OK", "all good").await;
        let probe = Probe::Http(
            local(port),
            HttpRequest {
                method: "POST".into(),
                path: "/v1/ping?x=1".into(),
                headers: [(
                    "X-Check".to_string(),
                    vec!["a".to_string(), "b".to_string()],
                )]
                .into(),
                body: "{\"ping\":1}".into(),
                ..Default::default()
            },
        );
        let out = probe.run(Duration::from_secs(5), &supervisor()).await;
        assert_eq!(out.status, HealthStatus::Passing, "{out:?}");
        assert!(out.output.ends_with("Output: all good"), "{out:?}");
        let request = rx.recv().await.unwrap();
        assert!(
            request.starts_with("POST /v1/ping?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        let lower = request.to_ascii_lowercase();
        assert!(
            lower.contains("x-check: a\r\n") && lower.contains("x-check: b\r\n"),
            "{request}"
        );
        assert!(
            lower.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
        assert!(request.ends_with("{\"ping\":1}"), "{request}");
    }

    #[tokio::test]
    async fn a_refused_or_silent_server_is_critical_within_the_timeout() {
        // A port nobody listens on: bound, then closed.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        for probe in [
            Probe::Http(local(port), HttpRequest::default()),
            Probe::Tcp(local(port)),
            Probe::Grpc(local(port), GrpcRequest::default()),
        ] {
            let out = probe.run(Duration::from_secs(2), &supervisor()).await;
            assert_eq!(out.status, HealthStatus::Critical);
            assert!(out.output.contains("refused"), "{out:?}");
        }
        // Accepts, never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let out = Probe::Http(local(port), HttpRequest::default())
            .run(Duration::from_millis(300), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Critical);
        assert!(out.output.contains("timed out after 300ms"), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(silent);
    }

    /// An https server with a self-signed certificate for "localhost", answering 200.
    async fn https_server() -> u16 {
        use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntls",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn https_checks_verify_the_certificate_unless_told_not_to() {
        let port = https_server().await;
        let request = |skip: bool| HttpRequest {
            tls: true,
            tls_skip_verify: skip,
            tls_server_name: "localhost".into(),
            ..Default::default()
        };
        let out = Probe::Http(local(port), request(true))
            .run(Duration::from_secs(5), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Passing, "{out:?}");
        assert!(
            out.output
                .starts_with(&format!("HTTP GET https://127.0.0.1:{port}/: 200 OK")),
            "{out:?}"
        );
        // Not signed by anything the system trusts.
        let out = Probe::Http(local(port), request(false))
            .run(Duration::from_secs(5), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Critical, "{out:?}");
        assert!(out.output.contains("TLS handshake"), "{out:?}");
    }

    #[tokio::test]
    async fn tcp_passes_when_the_port_accepts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = Probe::Tcp(local(port))
            .run(Duration::from_secs(2), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Passing, "{out:?}");
    }

    #[tokio::test]
    async fn a_script_check_without_a_supervisor_is_critical_and_says_why() {
        let out = Probe::Script {
            task_id: "a1.web".into(),
            command: vec!["/bin/true".into()],
        }
        .run(Duration::from_secs(2), &supervisor())
        .await;
        assert_eq!(out.status, HealthStatus::Critical);
        assert!(out.output.contains("task a1.web"), "{out:?}");
        assert_eq!(script_status(0), HealthStatus::Passing);
        assert_eq!(script_status(1), HealthStatus::Warning);
        assert_eq!(script_status(2), HealthStatus::Critical);
        assert_eq!(script_status(-1), HealthStatus::Critical);
    }

    #[test]
    fn grpc_health_messages_round_trip() {
        assert_eq!(grpc_health_request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(
            grpc_health_request("api"),
            vec![0, 0, 0, 0, 5, 0x0a, 3, b'a', b'p', b'i']
        );
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08]), None);
        assert_eq!(grpc_health_status(&[0, 0, 0]), None);
    }

    /// A gRPC health server (HTTP/2 without TLS) answering `status` for service "api" and
    /// SERVICE_UNKNOWN (as grpc-status 5, NOT_FOUND) for any other.
    async fn grpc_server(status: u8) -> u16 {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| async move {
                            assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let asked = String::from_utf8_lossy(body.get(7..).unwrap_or_default())
                                .to_string();
                            let mut trailers = hyper::HeaderMap::new();
                            let frames: Vec<Result<Frame<Bytes>, Infallible>> = if asked == "api"
                                || asked.is_empty()
                            {
                                trailers.insert("grpc-status", "0".parse().unwrap());
                                vec![
                                    Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                                    Ok(Frame::trailers(trailers)),
                                ]
                            } else {
                                trailers.insert("grpc-status", "5".parse().unwrap());
                                trailers.insert("grpc-message", "unknown service".parse().unwrap());
                                vec![Ok(Frame::trailers(trailers))]
                            };
                            let response = hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(StreamBody::new(futures::stream::iter(frames)))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), service)
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_passes_on_serving_only() {
        let serving = grpc_server(1).await;
        let request = |service: &str| GrpcRequest {
            service: service.into(),
            ..Default::default()
        };
        let out = Probe::Grpc(local(serving), request("api"))
            .run(Duration::from_secs(5), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Passing, "{out:?}");
        let out = Probe::Grpc(local(serving), request(""))
            .run(Duration::from_secs(5), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Passing, "{out:?}");
        let out = Probe::Grpc(local(serving), request("other"))
            .run(Duration::from_secs(5), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Critical);
        assert!(
            out.output.contains("code = 5 desc = unknown service"),
            "{out:?}"
        );
        let not_serving = grpc_server(2).await;
        let out = Probe::Grpc(local(not_serving), request("api"))
            .run(Duration::from_secs(5), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Critical);
        assert!(out.output.contains("NOT_SERVING"), "{out:?}");
    }

    /// The bridge-mode path: a port bound only inside a network namespace (made for this
    /// test, removed even when it fails) is reached by an http check run from inside it, and
    /// not from the host.
    #[tokio::test]
    async fn an_http_check_reaches_a_port_bound_only_inside_the_allocations_namespace() {
        if !isolation::privileged::require_root("an http check inside a network namespace") {
            return;
        }
        struct Namespace(String);
        impl Drop for Namespace {
            fn drop(&mut self) {
                let _ = netns::namespace::delete(&self.0);
            }
        }
        let name = format!(
            "noded-chk-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        netns::namespace::create(&name).unwrap();
        let ns = Namespace(name.clone());
        netns::namespace::loopback_up(&name).unwrap();
        let listener =
            netns::namespace::run_in(&name, || std::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap()
                .unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ninside",
                    )
                    .await;
            }
        });
        let inside = Endpoint {
            host: "127.0.0.1".into(),
            port,
            netns: Some(name.clone()),
        };
        let out = Probe::Http(inside, HttpRequest::default())
            .run(Duration::from_secs(5), &supervisor())
            .await;
        assert_eq!(out.status, HealthStatus::Passing, "{out:?}");
        assert!(out.output.ends_with("Output: inside"), "{out:?}");
        // The same address from the host's namespace is another socket: nobody listens there
        // (unless the host happens to use the port; then the body differs).
        let host = Probe::Http(local(port), HttpRequest::default())
            .run(Duration::from_secs(2), &supervisor())
            .await;
        assert!(!host.output.ends_with("Output: inside"), "{host:?}");
        drop(ns);
    }
}
