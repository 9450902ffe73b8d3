//! Who to notify: for a delivery, decided before its transaction (the citizen's own
//! settings when they saved some, otherwise the contact the agent gave), and decided
//! again when the notice is sent, from the settings the citizen has then.
//! Contacts leave this module sealed to the citizen's key (to the server's contacts key
//! once the vault is locked).

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
                keys.server_keys(),
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
    let sealed_to = citizen.contacts_recipient(&state.keys.contacts.recipient());
    let mut targets = Vec::new();
    for (channel, address) in chosen {
        if available(channel) {
            targets.push((channel, seal(&sealed_to, address.as_bytes())?));
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

/// Where a queued notice goes at the moment it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SendingTarget {
    /// Send on this channel to this address.
    Send(NoticeChannel, String),
    /// The citizen's current settings want no notice of this one.
    Drop,
}

/// The rule at sending time: without saved settings the contact frozen at delivery
/// stands; with settings, a notice on a channel the citizen still wants goes to their
/// current address for it (the frozen one when they left it empty), a notice on a
/// channel they turned off moves to the channel they chose instead unless another
/// notice (`covered`) already tells them there, and "none" drops it.
pub(super) fn target_at_sending(
    queued: NoticeChannel,
    frozen_contact: String,
    saved: Option<&NotificationContacts>,
    covered: &[NoticeChannel],
    can_send: impl Fn(NoticeChannel) -> bool,
) -> SendingTarget {
    let Some(settings) = saved else {
        return SendingTarget::Send(queued, frozen_contact);
    };
    let address = |channel: NoticeChannel| match channel {
        NoticeChannel::Email => settings.email.clone(),
        NoticeChannel::Sms => settings.phone.clone(),
    };
    if wanted(settings.channel).contains(&queued) {
        return SendingTarget::Send(queued, address(queued).unwrap_or(frozen_contact));
    }
    wanted(settings.channel)
        .into_iter()
        .filter(|channel| !covered.contains(channel) && can_send(*channel))
        .find_map(|channel| address(channel).map(|to| SendingTarget::Send(channel, to)))
        .unwrap_or(SendingTarget::Drop)
}

/// The channels a setting asks for.
fn wanted(channel: Channel) -> Vec<NoticeChannel> {
    match channel {
        Channel::Email => vec![NoticeChannel::Email],
        Channel::Sms => vec![NoticeChannel::Sms],
        Channel::Both => vec![NoticeChannel::Email, NoticeChannel::Sms],
        Channel::None => Vec::new(),
    }
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

    #[test]
    fn at_sending_time_the_current_settings_decide() {
        let frozen = || "frozen@b.example".to_owned();
        let any = |_: NoticeChannel| true;
        let email = NoticeChannel::Email;
        assert_eq!(
            target_at_sending(email, frozen(), None, &[], any),
            SendingTarget::Send(email, frozen())
        );
        let settings = |channel, email: Option<&str>, phone: Option<&str>| NotificationContacts {
            email: email.map(str::to_owned),
            phone: phone.map(str::to_owned),
            channel,
        };
        let off = settings(Channel::None, Some("new@b.example"), None);
        assert_eq!(
            target_at_sending(email, frozen(), Some(&off), &[], any),
            SendingTarget::Drop
        );
        let moved = settings(Channel::Email, Some("new@b.example"), None);
        assert_eq!(
            target_at_sending(email, frozen(), Some(&moved), &[], any),
            SendingTarget::Send(email, "new@b.example".to_owned())
        );
        let empty = settings(Channel::Email, None, None);
        assert_eq!(
            target_at_sending(email, frozen(), Some(&empty), &[], any),
            SendingTarget::Send(email, frozen())
        );
        let sms = settings(Channel::Sms, None, Some("+33612345678"));
        assert_eq!(
            target_at_sending(email, frozen(), Some(&sms), &[], any),
            SendingTarget::Send(NoticeChannel::Sms, "+33612345678".to_owned())
        );
        assert_eq!(
            target_at_sending(email, frozen(), Some(&sms), &[NoticeChannel::Sms], any),
            SendingTarget::Drop,
            "another notice already goes by SMS"
        );
        assert_eq!(
            target_at_sending(email, frozen(), Some(&sms), &[], |c| c == email),
            SendingTarget::Drop,
            "no SMS channel on this instance"
        );
    }
}
