// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title CheckpointAnchor
/// @notice Anchors the signed checkpoints of one leadgate transparency log, so that the log
/// operator cannot show two auditors two different logs, nor roll the log back, without the
/// chain showing it.
///
/// A checkpoint is the pair (size, root): the number of leaves and the RFC 6962 / RFC 9162
/// Merkle tree hash (SHA-256) of the log's first `size` leaves. `anchor` accepts a checkpoint
/// only if
///   1. an enclave key registered by the owner signed it: EIP-712 typed data
///      `Checkpoint(string origin,uint64 size,bytes32 root)` under the domain
///      (name "leadgate CheckpointAnchor", version "1", chain id, this contract);
///   2. it is larger than the last anchored checkpoint; and
///   3. an RFC 9162 §2.1.4 consistency proof shows that the last anchored tree is a prefix of
///      the new one (SHA-256 precompile, 0x02).
/// So the anchored history only grows, and every anchored root extends every earlier one.
/// Anyone may submit; only the enclave's signature counts.
///
/// Enclave keys are bound to attestations: `registerEnclaveKey` takes the SHA-256 of the AWS
/// Nitro attestation document that binds the key and the document's PCR0 (48 bytes, SHA-384),
/// and emits both, so that anyone can fetch the document and check the binding. A log has one
/// writer, so one key is active at a time: registering a new key rotates to it (the old key's
/// anchors stay, its signatures stop counting), and revoking the active key stops anchoring
/// until the next registration.
///
/// Gas: an anchor is one new storage slot (the root) and one rewritten slot (the active key, the
/// latest size and the anchor count, packed), and its hot paths (signature recovery, the EIP-712
/// digest and the consistency proof) are assembly. Every anchor to a log of 1M entries costs at
/// most 80k gas with the compact signature the host sends (`scripts/contracts gas`).
contract CheckpointAnchor {
    /// EIP-712 domain type hash.
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// EIP-712 type hash of the signed struct.
    bytes32 public constant CHECKPOINT_TYPEHASH = keccak256("Checkpoint(string origin,uint64 size,bytes32 root)");
    bytes32 private constant NAME_HASH = keccak256("leadgate CheckpointAnchor");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// secp256k1n / 2: signatures with a larger `s` are malleable copies (EIP-2) and refused.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// The log's origin line (C2SP tlog-checkpoint), e.g. "leadgate.dev/log".
    string public origin;
    /// keccak256(origin), as EIP-712 encodes a string member.
    bytes32 private immutable originHash;
    /// The domain separator for the deployment chain (recomputed if the chain id changes).
    bytes32 private immutable cachedDomainSeparator;
    uint256 private immutable cachedChainId;
    /// The account that registers and revokes enclave keys.
    address public owner;

    /// The active enclave key, the latest anchored size and the number of anchors: one slot.
    struct Head {
        address enclaveKey;
        uint64 size;
        uint32 count;
    }

    Head private head;
    /// Anchored roots are stored by tree size at slot ROOTS + size (read them with `rootAt`): the
    /// layout Solidity gives a storage array's elements, which spares the keccak256 a mapping
    /// costs per access. ROOTS = keccak256("leadgate.CheckpointAnchor.rootAt"), which the tests
    /// check; like an array's, the 2^64 slots from it cannot meet the contract's other slots
    /// short of a keccak256 collision.
    uint256 private constant ROOTS = 0xe1e5c5d40b1696dd95a3053d40118ad294a7e4d2a921f34582e8a51fc7c7df85;
    /// Every key ever registered (Ethereum address of the secp256k1 anchor key) and the SHA-256
    /// of the attestation document that bound it at its latest registration; zero if never.
    mapping(address key => bytes32 attestationSha256) public attestationOf;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// `pcr0` is 48 bytes (SHA-384); all zeros for a debug or dev enclave.
    event EnclaveKeyRegistered(address indexed key, bytes32 indexed attestationSha256, bytes pcr0);
    event EnclaveKeyRevoked(address indexed key);
    event CheckpointAnchored(uint64 indexed size, bytes32 root);

    error NotOwner();
    error ZeroAddress();
    error ZeroAttestation();
    error BadPcr0Length(uint256 length);
    error NotRegistered(address key);
    error SizeNotIncreasing(uint64 latest, uint64 size);
    error BadSignature();
    error UnregisteredSigner(address signer);
    error InconsistentCheckpoint();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @param origin_ the log's origin line; signatures cover it.
    constructor(string memory origin_) {
        origin = origin_;
        originHash = keccak256(bytes(origin_));
        cachedChainId = block.chainid;
        cachedDomainSeparator = _domainSeparator();
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// Registers an enclave anchor key and makes it the active one (rotating away from the
    /// previous key, whose anchors stay).
    /// @param key the Ethereum address of the enclave's secp256k1 anchor key
    /// @param attestationSha256 SHA-256 of the attestation document (COSE_Sign1 bytes) binding it
    /// @param pcr0 the document's PCR0, 48 bytes
    function registerEnclaveKey(address key, bytes32 attestationSha256, bytes calldata pcr0) external onlyOwner {
        if (key == address(0)) revert ZeroAddress();
        if (attestationSha256 == bytes32(0)) revert ZeroAttestation();
        if (pcr0.length != 48) revert BadPcr0Length(pcr0.length);
        attestationOf[key] = attestationSha256;
        head.enclaveKey = key;
        emit EnclaveKeyRegistered(key, attestationSha256, pcr0);
    }

    /// Revokes the active key (say, on compromise): nothing anchors until a key is registered.
    function revokeEnclaveKey(address key) external onlyOwner {
        if (key == address(0) || head.enclaveKey != key) revert NotRegistered(key);
        head.enclaveKey = address(0);
        emit EnclaveKeyRevoked(key);
    }

    /// The active enclave key; the zero address if none.
    function enclaveKey() external view returns (address) {
        return head.enclaveKey;
    }

    /// How many checkpoints have been anchored.
    function anchorCount() external view returns (uint32) {
        return head.count;
    }

    /// The root anchored at tree size `size`; zero for a size never anchored.
    function rootAt(uint64 size) public view returns (bytes32 root) {
        assembly ("memory-safe") {
            root := sload(add(ROOTS, and(size, 0xffffffffffffffff)))
        }
    }

    /// The latest anchored checkpoint; (0, 0) before the first.
    function latest() external view returns (uint64 size, bytes32 root) {
        size = head.size;
        root = rootAt(size);
    }

    /// Anchors checkpoint (size, root).
    /// @param consistencyProof RFC 9162 consistency proof from the latest anchored checkpoint to
    ///        this one (empty for the first anchor)
    /// @param signature over `checkpointDigest(size, root)`: 65 bytes r ‖ s ‖ v (v = 27 or 28,
    ///        low s), or the same in its 64-byte EIP-2098 compact form r ‖ vs
    function anchor(uint64 size, bytes32 root, bytes32[] calldata consistencyProof, bytes calldata signature) external {
        address signer = _recover(checkpointDigest(size, root), signature);
        if (signer == address(0)) revert BadSignature();
        // `head`, read and written as its one packed slot (enclaveKey in bits 0-159, size in
        // 160-223, count in 224-255), which saves the copy through memory of `Head memory`.
        uint256 h;
        uint64 latestSize_;
        assembly ("memory-safe") {
            h := sload(head.slot)
            latestSize_ := and(shr(160, h), 0xffffffffffffffff)
        }
        if (signer != address(uint160(h))) revert UnregisteredSigner(signer);
        if (size <= latestSize_) revert SizeNotIncreasing(latestSize_, size);
        if (latestSize_ == 0) {
            if (consistencyProof.length != 0) revert InconsistentCheckpoint();
        } else if (!_consistent(latestSize_, size, rootAt(latestSize_), root, consistencyProof)) {
            revert InconsistentCheckpoint();
        }
        assembly ("memory-safe") {
            let n := and(size, 0xffffffffffffffff)
            sstore(add(ROOTS, n), root)
            // The same key, the new size, and count + 1. The count only counts: after 2^32
            // anchors (over 2^47 gas) it would wrap to 0, and the carry out of bit 255 is
            // dropped, so the key and the size cannot change.
            sstore(head.slot, add(or(and(h, not(shl(160, 0xffffffffffffffff))), shl(160, n)), shl(224, 1)))
        }
        emit CheckpointAnchored(size, root);
    }

    /// The EIP-712 domain separator for this chain and contract.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _domainSeparator();
    }

    function _domainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// The EIP-712 digest the enclave signs for checkpoint (size, root) of this log, 32 bytes:
    /// keccak256("\x19\x01" ‖ domainSeparator() ‖ hashStruct), where hashStruct =
    /// keccak256(abi.encode(CHECKPOINT_TYPEHASH, keccak256(origin), size, root)) (EIP-712).
    function checkpointDigest(uint64 size, bytes32 root) public view returns (bytes32 digest) {
        bytes32 typeHash = CHECKPOINT_TYPEHASH;
        bytes32 originHash_ = originHash;
        bytes32 separator = domainSeparator();
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typeHash)
            mstore(add(m, 0x20), originHash_)
            mstore(add(m, 0x40), and(size, 0xffffffffffffffff))
            mstore(add(m, 0x60), root)
            let structHash := keccak256(m, 0x80)
            // "\x19\x01" at [0x1e, 0x20), the separator at 0x20, the struct hash at 0x40 (over the
            // free memory pointer, restored after).
            mstore(0x00, 0x1901)
            mstore(0x20, separator)
            mstore(0x40, structHash)
            digest := keccak256(0x1e, 0x42)
            mstore(0x40, m)
        }
    }

    /// RFC 9162 §2.1.4.2: whether `proof` shows that the tree of `first` leaves with root
    /// `firstRoot` is a prefix of the tree of `second` leaves with root `secondRoot`.
    /// False unless 0 < first < second (anchors only grow).
    function verifyConsistency(
        uint64 first,
        uint64 second,
        bytes32 firstRoot,
        bytes32 secondRoot,
        bytes32[] calldata proof
    ) external view returns (bool) {
        if (first == 0 || first >= second) return false;
        return _consistent(first, second, firstRoot, secondRoot, proof);
    }

    /// The consistency check, for 0 < first < second. It accepts exactly the proofs that RFC 9162
    /// §2.1.4.2's algorithm accepts, in the form transparency-dev/merkle's `VerifyConsistency`
    /// gives it (proof/verify.go), which splits the proof by the bits of the sizes up front
    /// instead of testing them at every step:
    ///
    ///   low   = the lowest set bit of first (first = odd * low)
    ///   seed  = firstRoot if first == low (a power of two), else the proof's first hash
    ///   mask  = (first - 1) / low: the bits of first - 1 above its trailing ones
    ///   inner = (first - 1 XOR second - 1) / low: one inner hash per bit up to its highest
    ///   inner hash at bit i: if bit i of mask is set, a left sibling on both paths:
    ///                          fr = H(c, fr), sr = H(c, sr)
    ///                        else a right sibling in the new tree only: sr = H(sr, c)
    ///   border: one hash per set bit of mask above inner's highest bit: fr = H(c, fr), sr = H(c, sr)
    ///   consistent iff the proof has exactly these hashes, fr == firstRoot and sr == secondRoot
    ///
    /// where H(l, r) = SHA-256(0x01 ‖ l ‖ r) (RFC 9162 §2.1.1), on the SHA-256 precompile (0x02).
    /// The loops read hashes at `off` and check only at the end that they used the whole proof
    /// and no more: a read past it is a read of other calldata (or zeros), bounded by the 64 bits
    /// of the sizes, and its result is thrown away. Assembly, because this is most of an anchor's
    /// gas. The Foundry tests check it against the Rust implementation's vectors (RFC 9162's own
    /// loop) and an independent recursive prover, and mutate every proof hash.
    function _consistent(uint64 first, uint64 second, bytes32 firstRoot, bytes32 secondRoot, bytes32[] calldata proof)
        private
        view
        returns (bool ok)
    {
        assembly ("memory-safe") {
            // Solidity leaves the bits above a uint64 unspecified in assembly: clean them.
            first := and(first, 0xffffffffffffffff)
            second := and(second, 0xffffffffffffffff)
            let low := and(first, sub(0, first))
            let mask := sub(div(first, low), 1)
            let inner := div(xor(sub(first, 1), sub(second, 1)), low)
            let off := proof.offset
            let fr := firstRoot
            if mask {
                fr := calldataload(off)
                off := add(off, 0x20)
            }
            // Two H inputs, 0x01 ‖ l ‖ r, whose r word is also where H's result goes, so that the
            // running hashes stay in memory: fr's at [0x1f, 0x60) (0x01 at 0x1f, l at 0x20, fr at
            // 0x40) and sr's at [0x7f, 0xc0) (0x01 at 0x7f, l at 0x80, sr at 0xa0). They cover
            // the scratch words, the free memory pointer and the zero slot, which are restored
            // below, and [0x80, 0xc0), temporary memory past the free memory pointer: nothing is
            // allocated before this point in `anchor` or `verifyConsistency`, so it is 0x80, and
            // the check below would fail every call (and every test) if a compiler reserved
            // memory there. A precompile call fails only when out of gas, and then what is left
            // (at most 1/64 of the < 100 gas it was given) cannot pay for the next opcode, so
            // its status need not be checked.
            let fmp := mload(0x40)
            if gt(fmp, 0x80) { revert(0, 0) }
            mstore8(0x1f, 0x01)
            mstore8(0x7f, 0x01)
            mstore(0x40, fr)
            mstore(0xa0, fr)
            // The inner steps' bits of mask, with inner above them (bit 128 up) to count them.
            let x := or(shl(128, inner), mask)
            for {} gt(x, 0xffffffffffffffffffffffffffffffff) {
                off := add(off, 0x20)
                x := shr(1, x)
            } {
                switch and(x, 1)
                case 0 {
                    // sr = H(sr, c)
                    mstore(0x80, mload(0xa0))
                    mstore(0xa0, calldataload(off))
                    pop(staticcall(gas(), 0x02, 0x7f, 65, 0xa0, 0x20))
                }
                default {
                    // fr = H(c, fr), sr = H(c, sr)
                    let c := calldataload(off)
                    mstore(0x20, c)
                    mstore(0x80, c)
                    pop(staticcall(gas(), 0x02, 0x1f, 65, 0x40, 0x20))
                    pop(staticcall(gas(), 0x02, 0x7f, 65, 0xa0, 0x20))
                }
            }
            mask := and(x, 0xffffffffffffffff)
            // mask now holds the bits above the inner ones: one border hash per set bit.
            for {} mask {
                off := add(off, 0x20)
                mask := and(mask, sub(mask, 1))
            } {
                // fr = H(c, fr), sr = H(c, sr)
                let c := calldataload(off)
                mstore(0x20, c)
                mstore(0x80, c)
                pop(staticcall(gas(), 0x02, 0x1f, 65, 0x40, 0x20))
                pop(staticcall(gas(), 0x02, 0x7f, 65, 0xa0, 0x20))
            }
            let used := eq(off, add(proof.offset, shl(5, proof.length)))
            ok := and(used, and(eq(mload(0x40), firstRoot), eq(mload(0xa0), secondRoot)))
            mstore(0x40, fmp)
            mstore(0x60, 0)
        }
    }

    /// ecrecover with the checks it lacks. `signature` is 65 bytes r ‖ s ‖ v, or the same
    /// signature in its 64-byte EIP-2098 compact form r ‖ vs, vs = (v - 27) << 255 | s (which
    /// costs less calldata: the host submits this one). v must be 27 or 28 and s low (EIP-2).
    /// Returns the zero address for a signature that fails these checks or that the precompile
    /// (0x01) cannot recover.
    function _recover(bytes32 digest, bytes calldata signature) private view returns (address signer) {
        assembly ("memory-safe") {
            let s := calldataload(add(signature.offset, 0x20))
            let v := 0
            switch signature.length
            case 64 {
                v := add(27, shr(255, s))
                s := and(s, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
            }
            case 65 { v := byte(0, calldataload(add(signature.offset, 0x40))) }
            if and(iszero(gt(s, HALF_ORDER)), or(eq(v, 27), eq(v, 28))) {
                let m := mload(0x40)
                mstore(m, digest)
                mstore(add(m, 0x20), v)
                mstore(add(m, 0x40), calldataload(signature.offset))
                mstore(add(m, 0x60), s)
                mstore(0x00, 0)
                pop(staticcall(gas(), 0x01, m, 0x80, 0x00, 0x20))
                signer := mload(0x00)
            }
        }
    }
}
