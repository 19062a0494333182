//! A configuration reload reaching the B2BUA task (`dialplane serve` on SIGHUP)
//!
//! The task holds the configuration in one place ([`Services`](super::Services)); a reload
//! replaces it, the app and the webhook client there, the registrar's users, the
//! transports' rate limit and the carriers' gateways (whose health carries over). Calls in progress keep the configuration they started with (each
//! holds its own `Arc`); new calls get the new one.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{AppSource, Core, Msg};
use crate::config::Config;
use crate::create_call::{CreateCall, CreateCallError};
use crate::payload::CallSid;
use crate::webhook::WebhookClient;

/// What a reload replaces
#[derive(Debug)]
pub struct Reload {
    /// The new configuration, already checked (its socket sections unchanged).
    pub config: Arc<Config>,
    /// The app of new calls.
    pub app: AppSource,
    /// A client for a new `webhook_secret` (None: keep the running one and its connections).
    pub webhooks: Option<WebhookClient>,
}

/// Hands reloads to the running B2BUA task
#[derive(Debug, Clone)]
pub struct Handle(pub(super) mpsc::UnboundedSender<Msg>);

impl Handle {
    /// Queues `reload` for the task; false when the task has ended
    pub fn reload(&self, reload: Reload) -> bool {
        self.0.send(Msg::Reload(Box::new(reload))).is_ok()
    }

    /// REST createCall: has the task place `request`; the new call's call_sid.
    pub async fn create_call(
        &self,
        account_sid: &str,
        request: CreateCall,
    ) -> Result<CallSid, CreateCallError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = CreateCallError::Unavailable("the B2BUA has stopped");
        self.0
            .send(Msg::CreateCall {
                account_sid: account_sid.to_string(),
                request: Box::new(request),
                reply,
            })
            .map_err(|_| gone.clone())?;
        answer.await.map_err(|_| gone)?
    }
}

impl Core {
    pub(super) fn reload(&mut self, r: Reload) {
        let Reload {
            config,
            app,
            webhooks,
        } = r;
        self.registrar
            .reconfigure(&config.registrar, &super::nonce_secret(&config, &self.svc));
        self.transports.set_rate_limit(config.sip.rate_limit);
        self.gateways
            .reconfigure(&config.carriers, std::time::Instant::now());
        self.svc.config = config;
        self.svc.app = app;
        if let Some(w) = webhooks {
            self.svc.webhooks = w;
        }
        tracing::debug!(calls = self.calls.len(), "b2bua: configuration replaced");
    }
}
