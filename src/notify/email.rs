//! The email channel: lettre over a pooled SMTP connection, one multipart
//! (plain text + HTML) message per notice, with no attachment and no remote content.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::channels::SendFailure;
use super::texts::EmailTexts;
use crate::config::EmailConfig;

/// Sends email notices through the configured relay.
#[derive(Clone)]
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Checks `[notify.email]` at start: a URL lettre accepts and a valid sender.
pub fn check_email_config(config: &EmailConfig) -> Result<(), String> {
    config
        .from
        .parse::<Mailbox>()
        .map_err(|error| format!("from: {error}"))?;
    if config.pool_size == 0 {
        return Err("pool_size must be greater than 0".to_owned());
    }
    let url = config.smtp_url.expose_secret();
    if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
        return Err("smtp_url must start with smtp:// or smtps://".to_owned());
    }
    // The parse error is not echoed: the URL may carry a password.
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map(|_| ())
        .map_err(|_| "smtp_url is not a valid SMTP URL (see eguichet.example.toml)".to_owned())
}

impl EmailChannel {
    /// Builds the pooled transport (connections open lazily, on the first send).
    pub fn from_config(config: &EmailConfig, timeout: Duration) -> Result<Self, String> {
        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|error| format!("notify.email.from: {error}"))?;
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose_secret())
                .map_err(|_| "notify.email.smtp_url is not a valid SMTP URL".to_owned())?
                .timeout(Some(timeout))
                .pool_config(PoolConfig::new().max_size(config.pool_size))
                .build();
        Ok(Self { transport, from })
    }

    /// The sender's address, the one address a notice may contain.
    pub fn sender_address(&self) -> String {
        self.from.email.to_string()
    }

    /// Builds the message for `to` (plain text and HTML alternatives, nothing else).
    pub fn message(&self, to: &str, texts: &EmailTexts) -> Result<Message, SendFailure> {
        let to = to
            .parse::<Mailbox>()
            .map_err(|_| SendFailure::Dead("invalid_address"))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(texts.subject.clone())
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(texts.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(texts.html.clone()),
                    ),
            )
            .map_err(|_| SendFailure::Dead("invalid_message"))
    }

    /// Sends one message; a refusal by the relay (5xx) is final, anything else is retried.
    pub async fn send(&self, message: Message) -> Result<(), SendFailure> {
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(SendFailure::Dead("smtp_rejected")),
            Err(error) if error.is_timeout() => Err(SendFailure::Retry("smtp_timeout")),
            Err(error) if error.is_transient() => Err(SendFailure::Retry("smtp_transient")),
            Err(_) => Err(SendFailure::Retry("smtp_unavailable")),
        }
    }

    /// The transport, for the benchmark's baseline.
    pub fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        &self.transport
    }
}
