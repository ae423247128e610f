//! The object store that holds the log's durable copy, chosen by URL, through the
//! `object_store` crate:
//!
//! - `s3://BUCKET[/PREFIX]`: Amazon S3, Cloudflare R2 or any S3-protocol server; credentials,
//!   region and endpoint from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_REGION`, `AWS_ENDPOINT` for R2 or a local server, `AWS_ALLOW_HTTP=true` for plain
//!   HTTP), as `object_store`'s `AmazonS3Builder::from_env` reads them;
//! - `gs://BUCKET[/PREFIX]`: Google Cloud Storage (`GOOGLE_SERVICE_ACCOUNT` …);
//! - `az://CONTAINER[/PREFIX]`: Azure Blob Storage (`AZURE_STORAGE_ACCOUNT_NAME` …);
//! - `file:///DIR` or a plain path: a local directory (created if missing).

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

/// A bucket failure: the URL, or the store's error (unreachable, denied, …).
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// A URL this build does not read.
    #[error("bucket URL {0}: expected s3://, gs://, az://, file:// or a directory path")]
    BadUrl(String),
    /// The object store failed.
    #[error("bucket: {0}")]
    Store(#[from] object_store::Error),
    /// A local directory could not be created.
    #[error("bucket directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The log's bucket.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

impl Bucket {
    /// Opens the bucket at `url` (see the module docs). No request is made.
    ///
    /// # Errors
    /// [`BucketError::BadUrl`], or the builder's error (missing credentials, bad options).
    pub fn open(url: &str) -> Result<Self, BucketError> {
        let cloud = |rest: &str| -> (String, Option<String>) {
            match rest.split_once('/') {
                Some((b, p)) if !p.trim_matches('/').is_empty() => {
                    (b.to_owned(), Some(p.trim_matches('/').to_owned()))
                }
                Some((b, _)) => (b.to_owned(), None),
                None => (rest.to_owned(), None),
            }
        };
        let prefixed = |store: Arc<dyn ObjectStore>, prefix: Option<String>| match prefix {
            Some(p) => Arc::new(PrefixStore::new(store, p)) as Arc<dyn ObjectStore>,
            None => store,
        };
        let store: Arc<dyn ObjectStore> = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = cloud(rest);
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()?;
            prefixed(Arc::new(s3), prefix)
        } else if let Some(rest) = url.strip_prefix("gs://") {
            let (bucket, prefix) = cloud(rest);
            let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()?;
            prefixed(Arc::new(gcs), prefix)
        } else if let Some(rest) = url.strip_prefix("az://") {
            let (container, prefix) = cloud(rest);
            let az = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .build()?;
            prefixed(Arc::new(az), prefix)
        } else if url.contains("://") && !url.starts_with("file://") {
            return Err(BucketError::BadUrl(url.to_owned()));
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if dir.is_empty() {
                return Err(BucketError::BadUrl(url.to_owned()));
            }
            std::fs::create_dir_all(dir)?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
        };
        Ok(Self {
            store,
            url: url.to_owned(),
        })
    }

    /// A bucket over any object store (tests wrap one to slow or fail its requests).
    #[cfg(test)]
    pub(crate) fn from_store(store: Arc<dyn ObjectStore>, url: &str) -> Self {
        Self {
            store,
            url: url.to_owned(),
        }
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `bytes` at `path` (a whole object, replaced atomically).
    ///
    /// # Errors
    /// [`BucketError::Store`].
    pub async fn put(&self, path: &str, bytes: impl Into<Bytes>) -> Result<(), BucketError> {
        self.store
            .put(&Path::from(path), PutPayload::from(bytes.into()))
            .await?;
        Ok(())
    }

    /// Deletes every object directly under `prefix/` (e.g. the partial tiles `tile/0/000.p/`
    /// once `tile/0/000` is full); returns how many.
    ///
    /// # Errors
    /// [`BucketError::Store`].
    pub async fn delete_children(&self, prefix: &str) -> Result<usize, BucketError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&Path::from(prefix)))
            .await?;
        for o in &listed.objects {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(listed.objects.len())
    }

    /// The object at `path`, or `None` if there is none.
    ///
    /// # Errors
    /// [`BucketError::Store`] for anything but a missing object.
    pub async fn get(&self, path: &str) -> Result<Option<Bytes>, BucketError> {
        match self.store.get(&Path::from(path)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
