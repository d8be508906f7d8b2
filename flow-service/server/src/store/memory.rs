//! [`MemoryStore`]: the store in this process's memory, for developing and testing a
//! flow without a database (and without compiling a database driver).
//!
//! It keeps the same rules as the SQL stores — single use, claims with a lease, expiry,
//! all-or-nothing [`Store::finish`] — but only among the callers of one process: every
//! operation takes one lock, so it is atomic against every other operation on the same
//! store and its handles. Nothing survives the process, and two processes (replicas)
//! never see each other's data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value};

use super::{
    CLAIM_LEASE, Claim, Completion, Finished, Opened, Store, StoreError, StoreOptions, TokenKey,
    millis, now_ms,
};
use crate::sdk::Outcome;

/// Completions, outcomes and sessions in memory. Clones share the data, as
/// connections share a database; [`MemoryStore::with_options`] makes a handle with
/// other lifetimes on the same data.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    options: StoreOptions,
}

/// The three "tables", keyed like the SQL ones: by the token's hex SHA-256, held
/// inline ([`TokenKey`] is `Copy`), so a key into them allocates nothing for the token.
#[derive(Debug, Default)]
struct Data {
    completions: HashMap<TokenKey, Completion>,
    /// By (token, idempotency key): the outcome (`None` while claimed) and when the
    /// entry expires, in Unix milliseconds.
    outcomes: HashMap<(TokenKey, String), (Option<Outcome>, i64)>,
    /// By token: the state and when it expires.
    sessions: HashMap<TokenKey, (Map<String, Value>, i64)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(options: StoreOptions) -> Self {
        Self {
            data: Arc::default(),
            options,
        }
    }

    /// Another handle on the same data, with other options (lifetimes).
    pub fn with_options(&self, options: StoreOptions) -> Self {
        Self {
            data: self.data.clone(),
            options,
        }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The one lock every operation holds from start to end. No operation can panic
    /// between two of its changes, so a lock poisoned by a panic elsewhere still guards
    /// whole data and is used as it is.
    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(StoreOptions::default())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn url(&self) -> &str {
        "memory:"
    }

    async fn is_completed(&self, token: &TokenKey) -> Result<bool, StoreError> {
        Ok(self.data().completions.contains_key(token))
    }

    async fn completion(&self, token: &TokenKey) -> Result<Option<Completion>, StoreError> {
        Ok(self.data().completions.get(token).cloned())
    }

    async fn claim(&self, token: &TokenKey, key: &str) -> Result<Claim, StoreError> {
        let now = now_ms();
        let mut data = self.data();
        let entry = data
            .outcomes
            .entry((*token, key.to_owned()))
            .or_insert((None, i64::MIN));
        match entry {
            (Some(outcome), expires_at) if *expires_at > now => Ok(Claim::Done(outcome.clone())),
            (None, expires_at) if *expires_at > now => Ok(Claim::InProgress),
            // New, or lapsed: this call takes it.
            lapsed => {
                *lapsed = (None, now + millis(CLAIM_LEASE));
                Ok(Claim::Claimed)
            }
        }
    }

    async fn release(&self, token: &TokenKey, key: &str) -> Result<(), StoreError> {
        let id = (*token, key.to_owned());
        let mut data = self.data();
        if matches!(data.outcomes.get(&id), Some((None, _))) {
            data.outcomes.remove(&id);
        }
        Ok(())
    }

    async fn finish(
        &self,
        flow: &str,
        token: &TokenKey,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<Finished, StoreError> {
        let now = now_ms();
        let mut data = self.data();
        if let Outcome::Complete { params } = outcome {
            if data.completions.contains_key(token) {
                return Ok(Finished::AlreadyCompleted);
            }
            data.completions.insert(
                *token,
                Completion {
                    flow: flow.to_owned(),
                    params: params.clone(),
                    idempotency_key: key.unwrap_or_default().to_owned(),
                    completed_at: now,
                },
            );
            data.sessions.remove(token);
        } else if let Some(state) = session {
            let expires_at = now + millis(self.options.session_ttl);
            data.sessions.insert(*token, (state.clone(), expires_at));
        }
        if let Some(key) = key {
            let expires_at = now + millis(self.options.idempotency_ttl);
            data.outcomes.insert(
                (*token, key.to_owned()),
                (Some(outcome.clone()), expires_at),
            );
        }
        Ok(Finished::Recorded)
    }

    async fn session(&self, token: &TokenKey) -> Result<Map<String, Value>, StoreError> {
        let now = now_ms();
        Ok(match self.data().sessions.get(token) {
            Some((state, expires_at)) if *expires_at > now => state.clone(),
            _ => Map::new(),
        })
    }

    /// Claims cost a lock here, and keep several handles on one store (as tests use
    /// them for replicas) from running one call twice.
    fn claims_calls(&self) -> bool {
        true
    }

    async fn open_call(&self, token: &TokenKey, key: Option<&str>) -> Result<Opened, StoreError> {
        let now = now_ms();
        let data = self.data();
        let stored = key.and_then(|key| match data.outcomes.get(&(*token, key.to_owned())) {
            Some((Some(outcome), expires_at)) if *expires_at > now => Some(outcome.clone()),
            _ => None,
        });
        let session = match data.sessions.get(token) {
            Some((state, expires_at)) if *expires_at > now => state.clone(),
            _ => Map::new(),
        };
        Ok(Opened {
            completed: data.completions.contains_key(token),
            stored,
            session,
        })
    }

    async fn keep(
        &self,
        flow: &str,
        token: &TokenKey,
        key: Option<&str>,
        outcome: &Outcome,
        session: Option<&Map<String, Value>>,
    ) -> Result<(), StoreError> {
        debug_assert!(!matches!(outcome, Outcome::Complete { .. }));
        self.finish(flow, token, key, outcome, session)
            .await
            .map(drop)
    }

    async fn cleanup_expired(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut data = self.data();
        let before = data.outcomes.len() + data.sessions.len();
        data.outcomes.retain(|_, (_, expires_at)| *expires_at > now);
        data.sessions.retain(|_, (_, expires_at)| *expires_at > now);
        let after = data.outcomes.len() + data.sessions.len();
        Ok((before - after) as u64)
    }

    /// Nothing to close: the data lives as long as a handle on it.
    async fn close(&self) {}
}
