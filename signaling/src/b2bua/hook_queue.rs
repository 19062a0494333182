//! A call's ordered queue of webhook posts, drained by one task: the core never waits on a
//! hook, and the hooks of one queue arrive in the order they were queued.

use tokio::sync::mpsc;

use super::call::Call;
use super::{Core, unix_now};
use crate::redact::Text;
use crate::verbs::Hook;
use crate::webhook::{HookReply, WebhookError};

impl Core {
    /// Spawns the task posting what is queued on the returned sender to `hook`, each item
    /// turned into its payload by `payload`; `sent` sees every payload with its result after a
    /// failure was logged as "`what` failed". The task ends once every sender is dropped and
    /// the queue is sent.
    pub(super) fn hook_queue<T, P>(
        &self,
        call: &Call,
        hook: Hook,
        what: &'static str,
        mut payload: impl FnMut(T) -> P + Send + 'static,
        mut sent: impl FnMut(&P, Result<HookReply, WebhookError>) + Send + 'static,
    ) -> mpsc::UnboundedSender<T>
    where
        T: Send + 'static,
        P: serde::Serialize + Send + Sync + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<T>();
        let client = self.svc.webhooks.clone();
        let base = call.hook_base.clone();
        let sid = call.sid;
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                let payload = payload(item);
                let result = client
                    .send(&hook, base.as_ref(), &payload, unix_now())
                    .await;
                if let Err(e) = &result {
                    let e = e.to_string();
                    let error = Text(&e);
                    tracing::warn!(call_sid = %sid, %error, "{what} failed");
                }
                sent(&payload, result);
            }
        });
        tx
    }
}
