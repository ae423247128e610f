//! Where a verifier reads the log from: a gateway's API (`/v1/checkpoint`, `/v1/entries`,
//! `/v1/proof/*`), or the log's tiles (`--tiles URL`: the bucket's public URL, a static copy
//! of it, or a gateway's own `/checkpoint` and `/tile/…` paths) with no host involved, the
//! proofs computed here from the hash tiles (C2SP tlog-tiles, `leadgate_verifier::tiles`).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{anyhow, bail};
use leadgate_verifier::merkle::{self, Hash};
use leadgate_verifier::tiles::{self, TileNodes, TileRef};

use super::checkpoints::{fetch_consistency, hashes};
use crate::http::{get_bytes, get_typed};

/// Read access to a log: its newest checkpoint note (unverified), entries, and RFC 9162
/// proofs (unverified: callers check them against a verified checkpoint).
pub trait LogSource: Sync {
    /// The newest checkpoint note's bytes.
    fn checkpoint_note(&self) -> anyhow::Result<Vec<u8>>;
    /// Entry `index`'s leaf bytes, as the tree of `size` entries has it.
    fn entry(&self, index: u64, size: u64) -> anyhow::Result<Vec<u8>>;
    /// The inclusion proof of `index` in the tree of `size` entries.
    fn inclusion(&self, index: u64, size: u64) -> anyhow::Result<Vec<Hash>>;
    /// The consistency proof from `from` entries to `to`.
    fn consistency(&self, from: u64, to: u64) -> anyhow::Result<Vec<Hash>>;
    /// Where it reads from, for messages.
    fn url(&self) -> &str;
}

/// The log's tiles under `tiles` when given, else the gateway's API at `gateway`; `None`
/// when neither is given.
pub fn log_source<'a>(
    http: &'a ureq::Agent,
    tiles: Option<&str>,
    gateway: Option<&'a str>,
) -> Option<Box<dyn LogSource + 'a>> {
    match (tiles, gateway) {
        (Some(t), _) => Some(Box::new(TileSource::new(http, t))),
        (None, Some(gateway)) => Some(Box::new(GatewaySource { http, gateway })),
        (None, None) => None,
    }
}

/// A gateway's API.
pub struct GatewaySource<'a> {
    /// The agent.
    pub http: &'a ureq::Agent,
    /// Base URL.
    pub gateway: &'a str,
}

impl LogSource for GatewaySource<'_> {
    fn checkpoint_note(&self) -> anyhow::Result<Vec<u8>> {
        get_bytes(self.http, &format!("{}/v1/checkpoint", self.gateway))
    }

    fn entry(&self, index: u64, _size: u64) -> anyhow::Result<Vec<u8>> {
        get_bytes(self.http, &format!("{}/v1/entries/{index}", self.gateway))
    }

    fn inclusion(&self, index: u64, size: u64) -> anyhow::Result<Vec<Hash>> {
        let p: leadgate_verifier::api::InclusionProof = get_typed(
            self.http,
            &format!(
                "{}/v1/proof/inclusion?index={index}&size={size}",
                self.gateway
            ),
        )?;
        hashes(&p.proof)
    }

    fn consistency(&self, from: u64, to: u64) -> anyhow::Result<Vec<Hash>> {
        fetch_consistency(self.http, self.gateway, from, to)
    }

    fn url(&self) -> &str {
        self.gateway
    }
}

/// A log's tiles under a URL prefix; every tile fetched is kept for the run (a full tile, and
/// a partial tile of a given width, never change).
pub struct TileSource<'a> {
    http: &'a ureq::Agent,
    prefix: String,
    cache: Mutex<HashMap<String, Vec<u8>>>,
}

impl<'a> TileSource<'a> {
    /// Tiles under `prefix` (`https://bucket.example/log`: `…/checkpoint`, `…/tile/…`).
    pub fn new(http: &'a ureq::Agent, prefix: &str) -> Self {
        Self {
            http,
            prefix: prefix.trim_end_matches('/').to_owned(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Object `path` under the prefix; kept for the run when `keep` (a scan of the whole log
    /// reads each object once and keeps none, so its memory does not grow with the log).
    fn object_kept(&self, path: &str, keep: bool) -> anyhow::Result<Vec<u8>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = cache.get(path) {
            return Ok(b.clone());
        }
        drop(cache);
        let bytes = get_bytes(self.http, &format!("{}/{path}", self.prefix))?;
        if keep {
            cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.insert(path.to_owned(), bytes.clone());
        }
        Ok(bytes)
    }

    /// A hash tile or entry bundle of the tree the caller holds a checkpoint for; a partial
    /// one that is gone (the tile has filled since, and the log deleted its partials, as
    /// c2sp.org/tlog-tiles allows) is read as the prefix of the full tile.
    fn tile(&self, tile: TileRef, entries: bool) -> anyhow::Result<Vec<u8>> {
        self.tile_kept(tile, entries, true)
    }

    /// [`Self::tile`], kept for the run only when `keep`.
    fn tile_kept(&self, tile: TileRef, entries: bool, keep: bool) -> anyhow::Result<Vec<u8>> {
        let path = |t: &TileRef| if entries { t.entries_path() } else { t.path() };
        match self.object_kept(&path(&tile), keep) {
            Ok(b) => Ok(b),
            Err(e) if tile.is_full() => Err(e),
            Err(e) => {
                let full = TileRef {
                    width: tiles::TILE_WIDTH,
                    ..tile
                };
                let bytes = self.object_kept(&path(&full), keep).map_err(|_| e)?;
                if entries {
                    let all = tiles::decode_bundle(&bytes)
                        .map_err(|e| anyhow!("{}: {e}", full.entries_path()))?;
                    let some: Vec<&[u8]> = all
                        .iter()
                        .take(tile.width as usize)
                        .map(Vec::as_slice)
                        .collect();
                    Ok(tiles::encode_bundle(some)?)
                } else {
                    Ok(bytes
                        .get(..tile.width as usize * tiles::HASH_BYTES)
                        .unwrap_or_default()
                        .to_vec())
                }
            }
        }
    }

    /// The entry bundle holding entry `index` in the tree of `size` entries, decoded, with
    /// its tile (kept for the run when `keep`).
    fn bundle(&self, index: u64, size: u64, keep: bool) -> anyhow::Result<(TileRef, Vec<Vec<u8>>)> {
        let tile = tiles::tile_for(size, 0, index)
            .ok_or_else(|| anyhow!("entry {index} is not in the tree of {size}"))?;
        let bundle = self.tile_kept(tile, true, keep)?;
        let entries =
            tiles::decode_bundle(&bundle).map_err(|e| anyhow!("{}: {e}", tile.entries_path()))?;
        if entries.len() as u64 != tile.width {
            bail!(
                "{} has {} entries, not {}",
                tile.entries_path(),
                entries.len(),
                tile.width
            );
        }
        Ok((tile, entries))
    }

    /// Reads every entry of the tree of `size` entries in order, one entry bundle at a time
    /// (C2SP tlog-tiles `tile/entries/<N>[.p/<W>]`), and checks each bundle's leaf hashes
    /// against the level-0 hash tile of the same index. Calls `each(index, leaf)` per entry
    /// and keeps no bundle, so memory stays one bundle (at most 256 entries of at most
    /// 65,535 bytes) whatever the log's size.
    ///
    /// # Errors
    /// A bundle or hash tile that cannot be read or decoded, a bundle with another number of
    /// entries than its width, a leaf whose hash is not the hash tile's, or `each`'s error.
    pub fn scan_entries(
        &self,
        size: u64,
        mut each: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut first = 0;
        while first < size {
            let (tile, entries) = self.bundle(first, size, false)?;
            let hashes = self.tile_kept(tile, false, false)?;
            for (k, leaf) in entries.iter().enumerate() {
                let index = first + k as u64;
                let listed = hashes
                    .get(k * tiles::HASH_BYTES..(k + 1) * tiles::HASH_BYTES)
                    .ok_or_else(|| anyhow!("{} is short of entry {index}", tile.path()))?;
                if listed != merkle::leaf_hash(leaf) {
                    bail!(
                        "entry {index}: its leaf in {} does not hash to its hash in {}",
                        tile.entries_path(),
                        tile.path()
                    );
                }
                each(index, leaf)?;
            }
            first += tile.width;
        }
        Ok(())
    }

    /// The nodes of the tree of `size` entries; a tile that cannot be fetched is a missing
    /// node (`proof.missing_node`), never a wrong one.
    fn nodes(&self, size: u64) -> TileNodes<impl Fn(TileRef) -> Option<Vec<u8>> + '_> {
        TileNodes::new(size, move |t: TileRef| self.tile(t, false).ok())
    }
}

impl LogSource for TileSource<'_> {
    fn checkpoint_note(&self) -> anyhow::Result<Vec<u8>> {
        get_bytes(self.http, &format!("{}/checkpoint", self.prefix))
    }

    fn entry(&self, index: u64, size: u64) -> anyhow::Result<Vec<u8>> {
        let (tile, entries) = self.bundle(index, size, true)?;
        Ok(entries[(index - tile.first()) as usize].clone())
    }

    fn inclusion(&self, index: u64, size: u64) -> anyhow::Result<Vec<Hash>> {
        let nodes = self.nodes(size);
        merkle::inclusion_proof(&nodes, index, size)
            .map_err(|e| anyhow!("inclusion proof from the tiles under {}: {e}", self.prefix))
    }

    fn consistency(&self, from: u64, to: u64) -> anyhow::Result<Vec<Hash>> {
        let nodes = self.nodes(to);
        merkle::consistency_proof(&nodes, from, to).map_err(|e| {
            anyhow!(
                "consistency proof from the tiles under {}: {e}",
                self.prefix
            )
        })
    }

    fn url(&self) -> &str {
        &self.prefix
    }
}
