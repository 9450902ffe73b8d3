//! Who to notify for a delivery, decided before the delivery's transaction: the
//! citizen's own settings when they saved some, otherwise the contact the agent gave.
//! Contacts leave this module sealed to the citizen's key.

use super::{NoticeChannel, NotifyError};
use crate::citizens::{self, Channel, CitizenKey, NotificationContacts};
use crate::config::Mode;
use crate::crypto::seal;
use crate::state::AppState;
use crate::vault::metadata::Contact;

/// Sealed contacts to notify for one delivery, one per channel.
#[derive(Clone, Default)]
pub struct NoticeTargets(pub(crate) Vec<(NoticeChannel, Vec<u8>)>);

impl NoticeTargets {
    /// Targets whose contacts are already sealed to the citizen (imports, benchmarks).
    pub fn from_sealed(targets: Vec<(NoticeChannel, Vec<u8>)>) -> Self {
        Self(targets)
    }

    /// The channels a notice will be queued on.
    pub fn channels(&self) -> Vec<NoticeChannel> {
        self.0.iter().map(|(channel, _)| *channel).collect()
    }
}

/// Decides the channels and seals their contacts (reads and unseals the citizen's
/// settings: call it before the write transaction, never inside it).
pub async fn notice_targets(
    state: &AppState,
    citizen: &CitizenKey,
    delivery_contact: Option<&Contact>,
) -> Result<NoticeTargets, NotifyError> {
    let (keys, citizen_id) = (state.keys.clone(), citizen.id.clone());
    let saved = state
        .db
        .read(move |conn| -> Result<_, NotifyError> {
            Ok(citizens::saved_notification_contacts(
                conn,
                &keys.master,
                &citizen_id,
            )?)
        })
        .await?;
    let chosen = choose_contacts(saved.as_ref(), delivery_contact);
    let demo = state.config.mode == Mode::Demo;
    let available = |channel: NoticeChannel| {
        demo || match channel {
            NoticeChannel::Email => state.config.notify.email.is_some(),
            NoticeChannel::Sms => state.config.notify.sms.is_some(),
        }
    };
    let mut targets = Vec::new();
    for (channel, address) in chosen {
        if available(channel) {
            targets.push((channel, seal(&citizen.recipient, address.as_bytes())?));
        }
    }
    Ok(NoticeTargets(targets))
}

/// The rule: saved settings decide (channel `none`: no notice), with the delivery's
/// contact filling an address the citizen left empty; without settings, every contact
/// the agent gave is used.
fn choose_contacts(
    saved: Option<&NotificationContacts>,
    delivery: Option<&Contact>,
) -> Vec<(NoticeChannel, String)> {
    let given_email = delivery.and_then(|contact| contact.email.clone());
    let given_phone = delivery.and_then(|contact| contact.phone.clone());
    let (email, phone) = match saved {
        None => (given_email, given_phone),
        Some(settings) => {
            let (wants_email, wants_sms) = match settings.channel {
                Channel::Email => (true, false),
                Channel::Sms => (false, true),
                Channel::Both => (true, true),
                Channel::None => (false, false),
            };
            (
                wants_email
                    .then(|| settings.email.clone().or(given_email))
                    .flatten(),
                wants_sms
                    .then(|| settings.phone.clone().or(given_phone))
                    .flatten(),
            )
        }
    };
    let mut chosen = Vec::new();
    if let Some(email) = email {
        chosen.push((NoticeChannel::Email, email));
    }
    if let Some(phone) = phone {
        chosen.push((NoticeChannel::Sms, phone));
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(email: Option<&str>, phone: Option<&str>) -> Contact {
        Contact {
            email: email.map(str::to_owned),
            phone: phone.map(str::to_owned),
        }
    }

    #[test]
    fn without_settings_the_delivery_contact_is_used() {
        let given = contact(Some("a@b.example"), Some("+33612345678"));
        let chosen = choose_contacts(None, Some(&given));
        assert_eq!(chosen.len(), 2);
        assert!(choose_contacts(None, None).is_empty());
    }

    #[test]
    fn saved_settings_decide() {
        let given = contact(Some("agent-typed@b.example"), Some("+33612345678"));
        let none = NotificationContacts {
            email: Some("mine@b.example".to_owned()),
            phone: None,
            channel: Channel::None,
        };
        assert!(choose_contacts(Some(&none), Some(&given)).is_empty());
        let email = NotificationContacts {
            channel: Channel::Email,
            ..none.clone()
        };
        assert_eq!(
            choose_contacts(Some(&email), Some(&given)),
            vec![(NoticeChannel::Email, "mine@b.example".to_owned())]
        );
        let sms = NotificationContacts {
            channel: Channel::Sms,
            ..none
        };
        assert_eq!(
            choose_contacts(Some(&sms), Some(&given)),
            vec![(NoticeChannel::Sms, "+33612345678".to_owned())]
        );
    }
}
