//! API keys: only a hash of each key is stored; the key itself is shown once, at creation.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::{Result, Store};

/// A stored key (without any secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiKeyRecord {
    /// Id.
    pub id: i64,
    /// Human name.
    pub name: String,
    /// Scopes, comma-separated (`read`, `write`, `admin`).
    pub scopes: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Revoked, Unix ms; a revoked key authenticates nothing.
    pub revoked_at: Option<i64>,
}

impl ApiKeyRecord {
    /// The key's scopes.
    pub fn scope_list(&self) -> impl Iterator<Item = &str> {
        self.scopes.split(',').map(str::trim).filter(|s| !s.is_empty())
    }
}

/// SHA-256 of a key, hex: what is stored and looked up. Keys are 256-bit random strings, so
/// a fast unsalted hash is enough (no dictionary to attack).
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Stores a key's hash; returns its id.
    pub async fn create_api_key(&self, name: &str, scopes: &str, key_hash: &str, now_ms: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO api_keys (name, key_hash, scopes, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(key_hash)
        .bind(scopes)
        .bind(now_ms)
        .fetch_one(self.pool())
        .await?)
    }

    /// All keys, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        Ok(sqlx::query_as("SELECT id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY id")
            .fetch_all(self.pool())
            .await?)
    }

    /// Revokes a key (revoking twice keeps the first time).
    pub async fn revoke_api_key(&self, id: i64, now_ms: i64) -> Result<ApiKeyRecord> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
            .bind(now_ms)
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "API key", id: id.to_string() });
        }
        Ok(sqlx::query_as("SELECT id, name, scopes, created_at, revoked_at FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_one(self.pool())
            .await?)
    }

    /// The key with this hash, if any (revoked or not).
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(sqlx::query_as("SELECT id, name, scopes, created_at, revoked_at FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(self.pool())
            .await?)
    }
}
