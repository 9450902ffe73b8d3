//! The ways out: email, SMS, and in demo mode the local outbox for whichever of them is
//! not configured. Every notice is rendered, then passes the link-free check, then
//! leaves — in that order, whatever the channel.

use std::time::Duration;

use super::demo_outbox::{DemoMessage, DemoOutbox};
use super::email::EmailChannel;
use super::link_free::{LinkFreeCheck, OutgoingTexts};
use super::sms::SmsChannel;
use super::texts::{self, EmailTexts};
use super::{NoticeChannel, NoticeKind};
use crate::config::{Config, Mode};
use crate::web::page::Lang;

/// Why one send did not happen, as a short code stored on the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// Worth trying again later (relay down, gateway 5xx, timeout).
    Retry(&'static str),
    /// Never worth trying again (refused address, gateway 4xx, link-free refusal).
    Dead(&'static str),
}

/// Code of a notice refused by the link-free check.
pub const LINK_REFUSED: &str = "link_refused";

/// A notice ready to leave: everything unsealed, nothing rendered yet.
pub struct ReadyNotice {
    pub id: String,
    pub kind: NoticeKind,
    pub channel: NoticeChannel,
    pub contact: String,
    pub tenant_name: String,
    /// Titles of the announced documents, which the notice must not contain.
    pub titles: Vec<String>,
}

/// The configured channels of this instance.
#[derive(Clone)]
pub struct Channels {
    email: Option<EmailChannel>,
    sms: Option<SmsChannel>,
    demo: Option<DemoOutbox>,
    lang: Lang,
}

impl Channels {
    /// Email and SMS as configured; in demo mode the local outbox stands in for the rest.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let timeout = Duration::from_secs(config.notify.send_timeout_seconds);
        let email = config
            .notify
            .email
            .as_ref()
            .map(|email| EmailChannel::from_config(email, timeout))
            .transpose()?;
        let sms = config
            .notify
            .sms
            .as_ref()
            .map(|sms| SmsChannel::from_config(sms, timeout))
            .transpose()?;
        let demo = (config.mode == Mode::Demo).then(|| DemoOutbox::new(&config.data_dir));
        Ok(Self {
            email,
            sms,
            demo,
            lang: Lang::Fr,
        })
    }

    /// The configured email channel, if any.
    pub fn email(&self) -> Option<&EmailChannel> {
        self.email.as_ref()
    }

    /// Whether this instance can send on a channel (the demo outbox stands in for any).
    pub fn can_send(&self, channel: NoticeChannel) -> bool {
        self.demo.is_some()
            || match channel {
                NoticeChannel::Email => self.email.is_some(),
                NoticeChannel::Sms => self.sms.is_some(),
            }
    }

    /// Renders, checks and sends one notice.
    pub async fn send(&self, notice: &ReadyNotice) -> Result<(), SendFailure> {
        match notice.channel {
            NoticeChannel::Email => self.send_email(notice).await,
            NoticeChannel::Sms => self.send_sms(notice).await,
        }
    }

    async fn send_email(&self, notice: &ReadyNotice) -> Result<(), SendFailure> {
        let EmailTexts {
            subject,
            text,
            html,
        } = texts::email_texts(notice.kind, &notice.tenant_name, self.lang)
            .map_err(|_| SendFailure::Dead("render_failed"))?;
        let sender = self.email.as_ref().map(EmailChannel::sender_address);
        let check = LinkFreeCheck::new(sender.as_deref(), &notice.titles);
        let texts = EmailTexts {
            subject,
            text,
            html,
        };
        match &self.email {
            Some(email) => {
                let message = email.message(&notice.contact, &texts)?;
                // Counted on the message as built, not assumed: anything carried as a
                // file is an attachment.
                let raw = String::from_utf8_lossy(&message.formatted()).to_lowercase();
                let attachments = raw.matches("content-disposition: attachment").count()
                    + raw.matches("filename=").count();
                self.checked(notice, &check, &texts, attachments)?;
                email.send(message).await
            }
            None => {
                self.checked(notice, &check, &texts, 0)?;
                self.to_demo(notice, Some(texts.subject), texts.text).await
            }
        }
    }

    fn checked(
        &self,
        notice: &ReadyNotice,
        check: &LinkFreeCheck<'_>,
        texts: &EmailTexts,
        attachments: usize,
    ) -> Result<(), SendFailure> {
        let outgoing = OutgoingTexts {
            parts: vec![&texts.subject, &texts.text, &texts.html],
            attachments,
        };
        refuse_links(notice, check.check(&outgoing))
    }

    async fn send_sms(&self, notice: &ReadyNotice) -> Result<(), SendFailure> {
        let text = texts::sms_text(notice.kind, &notice.tenant_name, self.lang)
            .map_err(|_| SendFailure::Dead("render_failed"))?;
        let check = LinkFreeCheck::new(None, &notice.titles);
        let outgoing = OutgoingTexts {
            parts: vec![&text],
            attachments: 0,
        };
        refuse_links(notice, check.check(&outgoing))?;
        match &self.sms {
            Some(sms) => sms.send(&notice.contact, &text).await,
            None => self.to_demo(notice, None, text).await,
        }
    }

    async fn to_demo(
        &self,
        notice: &ReadyNotice,
        subject: Option<String>,
        text: String,
    ) -> Result<(), SendFailure> {
        let Some(demo) = self.demo.clone() else {
            return Err(SendFailure::Dead("channel_unconfigured"));
        };
        let message = DemoMessage {
            at: crate::now(),
            channel: notice.channel,
            to: notice.contact.clone(),
            subject,
            text,
        };
        crate::telemetry::spawn_blocking(move || demo.record(&message))
            .await
            .map_err(|_| SendFailure::Retry("demo_outbox"))?
            .map_err(|_| SendFailure::Retry("demo_outbox"))
    }
}

fn refuse_links(
    notice: &ReadyNotice,
    verdict: Result<(), super::link_free::LinkRefusal>,
) -> Result<(), SendFailure> {
    verdict.map_err(|refusal| {
        // The reason names a category, never the text.
        tracing::error!(notice.id = %notice.id, notice.channel = notice.channel.as_str(), reason = %refusal, "notice refused by the link-free check");
        SendFailure::Dead(LINK_REFUSED)
    })
}
