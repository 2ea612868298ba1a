//! `latchkey login --device`: the device authorization grant (RFC 8628) for a machine without a
//! browser. Shows where to go and the code to enter (and the link that carries it, as a QR code
//! on a terminal), then polls as `latchkey-client` does: at the interval, slower on `slow_down`
//! and on failures, until the user answers on the verification page or the code expires.

use std::io::{IsTerminal, Write};

use anyhow::{Context, anyhow};
use latchkey_client::device::DeviceAuthorization;
use latchkey_client::{Client, Error, SystemClock, TokenSet, unix_now};
use latchkey_proto::Scope;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// Ctrl-C while waiting: nothing was cached. `rp::main` exits with 130, as shells expect of an
/// interrupted command.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped (Ctrl-C) before the code was approved; nothing was cached")
    }
}

impl std::error::Error for Interrupted {}

/// Asks for the codes, shows them, and waits for the user's answer.
pub async fn run(client: &Client, scope: Scope, qr: bool) -> anyhow::Result<TokenSet> {
    let device = client.start_device_authorization(scope, None, unix_now()).await.map_err(|e| match e {
        Error::Metadata(_) if client.metadata().device_authorization_endpoint.is_none() => anyhow!(
            "{} does not offer sign-in on another device: its metadata has no device_authorization_endpoint (RFC 8628 §4)",
            client.issuer()
        ),
        e => anyhow::Error::new(e).context("asking for a device code (RFC 8628 §3.1)"),
    })?;
    let interrupted = interrupts().context("listening for Ctrl-C")?;
    let mut out = std::io::stdout();
    let terminal = out.is_terminal();
    out.write_all(instructions(&device, qr || terminal).as_bytes()).context("writing to stdout")?;
    out.flush().ok();
    eprintln!(
        "Waiting for the code to be approved (it expires in {}; Ctrl-C to stop) …",
        duration_words(device.expires_in)
    );
    let polled = tokio::select! {
        r = client.poll_device_authorization(&device, &SystemClock) => r,
        () = interrupted => return Err(Interrupted.into()),
    };
    polled.map_err(|e| match e {
        Error::DeviceDenied => anyhow!("The request was denied on the verification page: nothing was cached"),
        Error::DeviceExpired { expires_in } => anyhow!(
            "The code expired after {} without being approved: run latchkey login --device again",
            duration_words(expires_in)
        ),
        e => anyhow::Error::new(e).context("waiting for the approval"),
    })
}

/// Resolves at Ctrl-C. The handler is installed at once, before the instructions are printed:
/// a Ctrl-C right after them stops the wait as one while polling does, instead of killing the
/// process with the default action.
#[cfg(unix)]
fn interrupts() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        signal.recv().await;
    })
}

#[cfg(not(unix))]
fn interrupts() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// What the user reads: the page, the code, and the link that carries the code (as a QR code
/// too when `qr`, for a phone's camera). The URLs are printed from parsed `Url`s and the code was
/// refused if it had control characters, so the provider's answer cannot drive the terminal.
fn instructions(d: &DeviceAuthorization, qr: bool) -> String {
    let mut s = format!("To sign in, open {}\nand enter the code: {}\n", d.verification_uri, d.user_code);
    if let Some(complete) = &d.verification_uri_complete {
        s.push_str(&format!("\nOr open this link, which carries the code:\n{complete}\n"));
        if qr && let Some(code) = qr_code(complete.as_str()) {
            s.push('\n');
            s.push_str(&code);
            s.push('\n');
        }
    }
    s
}

/// The QR code of `text` in Unicode half blocks, two modules per character cell. Drawn light on
/// dark, for the usual dark terminal: a module that is dark in the code is a blank cell, and the
/// quiet zone (light) is drawn, so that cameras find the edges.
fn qr_code(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

/// `600` → "10 minutes", `90` → "90 seconds".
fn duration_words(secs: u64) -> String {
    match secs {
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_words(600), "10 minutes");
        assert_eq!(duration_words(60), "1 minute");
        assert_eq!(duration_words(90), "90 seconds");
        assert_eq!(duration_words(1), "1 second");
    }

    #[test]
    fn the_qr_code_is_half_blocks_with_a_quiet_zone() {
        let qr = qr_code("https://id.example/device?user_code=WDJB-MJHT").unwrap();
        let lines: Vec<&str> = qr.lines().collect();
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()));
        assert!(qr.chars().all(|c| matches!(c, ' ' | '█' | '▀' | '▄' | '\n')), "{qr}");
        // The quiet zone is light, which is drawn: the first row is all full blocks.
        assert!(lines[0].chars().all(|c| c == '█'), "{}", lines[0]);
        assert!(qr.contains(' '), "dark modules are blank cells");
    }
}
