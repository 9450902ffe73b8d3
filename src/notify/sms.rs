//! The SMS channel: a generic HTTP gateway adapter. Each notice is one JSON POST
//! `{"from", "to", "text"}`; 2xx means accepted, 4xx refused for good, 5xx or no
//! answer means try again later.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::channels::SendFailure;
use crate::config::SmsConfig;

/// Sends SMS notices through the configured gateway.
#[derive(Clone)]
pub struct SmsChannel {
    client: reqwest::Client,
    url: url::Url,
    auth: Option<(HeaderName, HeaderValue)>,
    sender: String,
}

#[derive(Serialize)]
struct GatewayRequest<'a> {
    from: &'a str,
    to: &'a str,
    text: &'a str,
}

/// Checks `[notify.sms]` at start.
pub fn check_sms_config(config: &SmsConfig) -> Result<(), String> {
    if !matches!(config.gateway_url.scheme(), "http" | "https") {
        return Err("gateway_url must be an http:// or https:// address".to_owned());
    }
    if config.sender.trim().is_empty()
        || config.sender.chars().count() > 11 && !config.sender.starts_with('+')
    {
        return Err("sender must be 1 to 11 characters, or a number starting with +".to_owned());
    }
    auth_header(config).map(|_| ())
}

/// `Name: value` → a header; the value is marked sensitive so it never prints.
fn auth_header(config: &SmsConfig) -> Result<Option<(HeaderName, HeaderValue)>, String> {
    let Some(raw) = &config.auth_header else {
        return Ok(None);
    };
    let invalid = || "auth_header must look like \"Name: value\"".to_owned();
    let (name, value) = raw.expose_secret().split_once(':').ok_or_else(invalid)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
    let mut value = HeaderValue::from_str(value.trim()).map_err(|_| invalid())?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

impl SmsChannel {
    /// Builds the HTTP client for the gateway.
    pub fn from_config(config: &SmsConfig, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("SMS gateway client: {error}"))?;
        Ok(Self {
            client,
            url: config.gateway_url.clone(),
            auth: auth_header(config)?,
            sender: config.sender.clone(),
        })
    }

    /// Posts one SMS to the gateway.
    pub async fn send(&self, to: &str, text: &str) -> Result<(), SendFailure> {
        let mut request = self.client.post(self.url.clone()).json(&GatewayRequest {
            from: &self.sender,
            to,
            text,
        });
        if let Some((name, value)) = &self.auth {
            request = request.header(name.clone(), value.clone());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) if response.status().is_client_error() => {
                Err(SendFailure::Dead("sms_rejected"))
            }
            Ok(_) => Err(SendFailure::Retry("sms_unavailable")),
            Err(error) if error.is_timeout() => Err(SendFailure::Retry("sms_timeout")),
            Err(_) => Err(SendFailure::Retry("sms_unreachable")),
        }
    }
}
