//! Decompressed Ed25519 keys of recent sellers. Decompressing a key (a field exponentiation)
//! is about a tenth of checking a submission's signature, and a marketplace has far fewer
//! sellers than submissions. The map is allocated once at its full capacity and emptied when
//! full, so enclave memory does not grow with the number of sellers.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

/// Default capacity: 4,096 sellers (about 1 MiB).
pub const DEFAULT_CAPACITY: usize = 4096;

/// The cache.
pub struct SellerKeys {
    keys: HashMap<[u8; 32], VerifyingKey>,
    capacity: usize,
}

impl SellerKeys {
    /// An empty cache holding up to `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: HashMap::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Decompresses and keeps the keys of `sellers` (64 hex digits each) not yet held.
    /// Anything that is not hex of a valid Ed25519 point is skipped: the submission's own
    /// checks refuse it.
    pub fn warm<'a>(&mut self, sellers: impl IntoIterator<Item = &'a str>) {
        for hex_key in sellers {
            let mut bytes = [0u8; 32];
            if hex_key.len() != 64 || hex::decode_to_slice(hex_key, &mut bytes).is_err() {
                continue;
            }
            if self.keys.contains_key(&bytes) {
                continue;
            }
            if let Ok(key) = VerifyingKey::from_bytes(&bytes) {
                if self.keys.len() >= self.capacity {
                    self.keys.clear();
                }
                self.keys.insert(bytes, key);
            }
        }
    }

    /// The key for `seller`, if held.
    pub fn get(&self, seller: &[u8; 32]) -> Option<&VerifyingKey> {
        self.keys.get(seller)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn holds_valid_keys_and_stays_within_capacity() {
        let keys: Vec<String> = (0..5u8)
            .map(|i| hex::encode(SigningKey::from_bytes(&[i; 32]).verifying_key().to_bytes()))
            .collect();
        let mut cache = SellerKeys::new(3);
        cache.warm(keys[..2].iter().map(String::as_str));
        assert_eq!(cache.len(), 2);
        let first: [u8; 32] = hex::decode(&keys[0]).unwrap().try_into().unwrap();
        assert_eq!(cache.get(&first).unwrap().to_bytes(), first);
        // Not hex, wrong length, and a y coordinate that is not on the curve: skipped.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(VerifyingKey::from_bytes(&off_curve).is_err());
        cache.warm([
            "zz".repeat(32).as_str(),
            "00",
            hex::encode(off_curve).as_str(),
        ]);
        assert_eq!(cache.len(), 2);
        // Full: emptied, then refilled.
        cache.warm(keys[2..].iter().map(String::as_str));
        assert!(cache.len() <= 3);
        assert!(cache.get(&first).is_none());
    }
}
