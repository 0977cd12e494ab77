//! What the process's standard streams are connected to. A module of its own because both the
//! CLI and the supervisor set up logging with it, and neither should import the other for it.

/// Colours only for a person at a terminal: under systemd (journald), in a log file or a
/// pipe, escape codes would land in the text.
pub(crate) fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Whether standard output is a terminal: coloured `job plan` output only for a person.
pub(crate) fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}
