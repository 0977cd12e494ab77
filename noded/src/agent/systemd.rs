//! Running under systemd (`Type=notify`): READY once the agent serves, RELOADING/READY
//! around a SIGHUP reload, STOPPING on shutdown, a STATUS line for `systemctl status`, and
//! watchdog pings when the unit sets `WatchdogSec=`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing. The protocol is spoken by
//! the `sd-notify` crate (a datagram on the socket systemd names; no libsystemd).

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the agent serves, with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd a reload (SIGHUP) started; [`ready`] ends it. systemd 253+ wants the
/// monotonic time with it.
pub fn reloading() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| i128::from(t.tv_sec()) * 1_000_000 + i128::from(t.tv_nsec()) / 1000)
        .unwrap_or(0);
    send(&[NotifyState::Reloading, NotifyState::MonotonicUsec(now)]);
}

/// Tells systemd the agent is shutting down.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A new status line for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("telling systemd ({states:?}): {e}");
    }
}

/// The watchdog period systemd asks for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its period while the agent's runtime is alive: a wedged
/// runtime stops pinging and systemd restarts the agent (tasks keep running under the
/// supervisor and are reattached).
pub async fn run_watchdog(interval: Duration) {
    let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notifications_reach_the_socket_systemd_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // Only this test sets NOTIFY_SOCKET; no other test of the crate reads it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        let mut buf = [0u8; 256];
        ready("serving");
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving\n");
        stopping("bye");
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=bye\n");
        reloading();
        let n = socket.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        std::env::remove_var("NOTIFY_SOCKET");
    }
}
