//! The log in the C2SP tlog-tiles layout (`c2sp.org/tlog-tiles`), served from the database
//! at the same paths as the bucket publishes it, so a deployment without a bucket still speaks
//! the standard and clients read either alike: `GET /checkpoint` (uncached) and
//! `GET /tile/<L>/<N>[.p/<W>]`, `GET /tile/entries/<N>[.p/<W>]` (immutable, cached for a
//! year). Tiles are served only within the newest checkpoint's tree; CORS is open.

use super::{db, AppResult, AppState};
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use leadgate_verifier::api::ErrorBody;
use leadgate_verifier::merkle::leaf_hash;
use leadgate_verifier::tiles::{self as layout, TileRef};
use leadgate_verifier::ErrorCode;
use std::sync::Arc;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn unknown(what: &str) -> ApiError {
    ApiError::new(ErrorCode::TileUnknown, format!("no such tile: {what}"))
}

/// The newest checkpoint's note and size.
async fn newest(s: &AppState) -> AppResult<(Vec<u8>, u64)> {
    let note = super::log::latest_note(s).await?;
    let size = crate::tiles::publish::checkpoint_size(&note)
        .map_err(|e| ApiError::internal("stored checkpoint", e))?;
    Ok((note, size))
}

/// `GET /checkpoint`: the newest checkpoint, C2SP signed note (text/plain), not cached.
#[utoipa::path(get, path = "/checkpoint", tag = "auditor",
    responses((status = 200, description = "The newest checkpoint (c2sp.org/tlog-tiles), a C2SP signed note; not cached", content_type = "text/plain", body = String), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_checkpoint(State(s): State<Arc<AppState>>) -> AppResult<Response> {
    let (note, _) = newest(&s).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        note,
    )
        .into_response())
}

/// `GET /tile/{level}/{path}`: a hash tile (`level` 0 to 63) or an entry bundle (`level` is
/// `entries`), `path` the tile index as C2SP encodes it with an optional `.p/<W>`.
#[utoipa::path(get, path = "/tile/{level}/{path}", tag = "auditor",
    params(("level" = String, Path, description = "Tile level, 0 to 63, or `entries`"), ("path" = String, Path, description = "Tile index in 3-digit path elements (`x001/x234/067`), with `.p/<W>` for a partial tile")),
    responses((status = 200, description = "The tile: 32-byte hashes, or the entry bundle (uint16 big-endian lengths and entries); immutable", content_type = "application/octet-stream", body = Vec<u8>), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_tile(
    State(s): State<Arc<AppState>>,
    Path((level, rest)): Path<(String, String)>,
) -> AppResult<Response> {
    s.gateway.refuse_if_damaged()?;
    let entries = level == "entries";
    let level_n: u8 = if entries {
        0
    } else {
        match level.parse::<u8>() {
            Ok(l) if l < 64 && (l == 0 || !level.starts_with('0')) => l,
            _ => return Err(unknown(&level)),
        }
    };
    let tile = layout::parse_tile(level_n, &rest).ok_or_else(|| unknown(&rest))?;
    let (_, size) = newest(&s).await?;
    // Within the newest checkpoint's tree: its own partial tile, or a narrower one (a prefix).
    if layout::tile_for(size, tile.level, tile.first())
        .is_none_or(|t: TileRef| t.width < tile.width)
    {
        return Err(unknown(&rest));
    }
    let store = &s.gateway.store;
    let body = if entries {
        let leaves = store.leaves(tile.first(), tile.width).await.map_err(db)?;
        let hashes = store
            .node_range(0, tile.first(), tile.width)
            .await
            .map_err(db)?;
        if leaves.len() as u64 != tile.width || hashes.len() as u64 != tile.width {
            return Err(ApiError::internal("tile", "the database lacks entries"));
        }
        // Every leaf must hash to its tree node: a damaged row is never served.
        if let Some(i) = (0..leaves.len()).find(|&i| leaf_hash(&leaves[i]) != hashes[i]) {
            return Err(s.gateway.suspect(tile.first() + i as u64));
        }
        layout::encode_bundle(leaves.iter().map(|l| l.as_slice()))
            .map_err(|e| ApiError::internal("entry bundle", e))?
    } else {
        let hashes = store
            .node_range(8 * tile.level, tile.first(), tile.width)
            .await
            .map_err(db)?;
        if hashes.len() as u64 != tile.width {
            return Err(ApiError::internal("tile", "the database lacks hashes"));
        }
        hashes.concat()
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, IMMUTABLE),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response())
}
