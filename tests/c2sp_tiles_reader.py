#!/usr/bin/env python3
"""A reader of a C2SP tiled transparency log, written from the specs alone
(c2sp.org/tlog-tiles, c2sp.org/tlog-checkpoint, c2sp.org/signed-note; RFC 6962 hashing),
with no code of leadgate's: it checks leadgate's tiles independently of leadgate.

    c2sp_tiles_reader.py PREFIX VKEY

PREFIX is the log's URL prefix (PREFIX/checkpoint, PREFIX/tile/...), VKEY the log's note
verifier key (name+hexid+base64(0x01 || Ed25519 key)). Checks: the checkpoint's Ed25519
signature by VKEY and its origin; every level-0 tile against its entry bundle (each entry's
RFC 6962 leaf hash); every tile above against the Merkle Tree Hashes of the full tiles below;
the tree's root against the checkpoint. Prints "ok: SIZE entries" and exits 0, or names the
first failure and exits 1. Needs the `cryptography` package (Ed25519).
"""
import base64
import hashlib
import sys
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(hashes):
    """RFC 6962 Merkle Tree Hash over already-hashed leaves (a list of 32-byte hashes)."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def tile_index_path(n):
    """Zero-padded 3-digit elements, all but the last prefixed with x: 1234067 -> x001/x234/067."""
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def tile_path(level, n, width):
    p = f"tile/{level}/{tile_index_path(n)}"
    return p if width == 256 else f"{p}.p/{width}"


def entries_path(n, width):
    p = f"tile/entries/{tile_index_path(n)}"
    return p if width == 256 else f"{p}.p/{width}"


def verify_note(note, vkey):
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key = base64.b64decode(key_b64)
    if key[0] != 0x01 or len(key) != 33:
        fail("the verifier key is not an Ed25519 key")
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if key_id.hex() != key_id_hex:
        fail("the verifier key's id does not match")
    text, sep, sigs = note.partition("\n\n")
    if not sep:
        fail("the note has no signature block")
    text += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            fail(f"bad signature line {line!r}")
        signer, b64 = line[2:].split(" ", 1)
        sig = base64.b64decode(b64)
        if signer == name and sig[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(sig[4:], text.encode())
            return text
    fail("no signature by the log's key")


def main():
    prefix, vkey = sys.argv[1].rstrip("/"), sys.argv[2].strip()
    note = get(f"{prefix}/checkpoint").decode()
    text = verify_note(note, vkey)
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    if origin != vkey.split("+", 1)[0]:
        fail(f"checkpoint origin {origin!r} is not the key's name")
    if size == 0:
        fail("empty log")
    # Level 0: each tile against its entry bundle.
    level_hashes = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        tile = get(f"{prefix}/{tile_path(0, n, width)}")
        bundle = get(f"{prefix}/{entries_path(n, width)}")
        entries, i = [], 0
        while i < len(bundle):
            length = int.from_bytes(bundle[i:i + 2], "big")
            entries.append(bundle[i + 2:i + 2 + length])
            i += 2 + length
        if i != len(bundle) or len(entries) != width:
            fail(f"entry bundle {n} is malformed or has {len(entries)} entries, not {width}")
        hashes = [tile[j:j + 32] for j in range(0, len(tile), 32)]
        if len(tile) != 32 * width or hashes != [leaf_hash(e) for e in entries]:
            fail(f"level-0 tile {n} does not match its entry bundle")
        level_hashes.extend(hashes)
    if mth(level_hashes) != root:
        fail("the entries do not hash to the checkpoint's root")
    # Levels above: each hash is the MTH of a full tile below.
    below, level = level_hashes, 1
    while size >> (8 * level):
        count = size >> (8 * level)
        expect = [mth(below[k * 256:(k + 1) * 256]) for k in range(count)]
        got = []
        for n in range((count + 255) // 256):
            width = min(256, count - n * 256)
            tile = get(f"{prefix}/{tile_path(level, n, width)}")
            if len(tile) != 32 * width:
                fail(f"tile {level}/{n} has {len(tile)} bytes, not {32 * width}")
            got.extend(tile[j:j + 32] for j in range(0, len(tile), 32))
        if got != expect:
            fail(f"level-{level} tiles are not the hashes of the full tiles below")
        below, level = got, level + 1
    print(f"ok: {size} entries, {level} levels")


if __name__ == "__main__":
    main()
