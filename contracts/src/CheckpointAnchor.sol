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
/// until the next registration. The active key, the latest size and the anchor count share one
/// storage slot, which keeps an anchor at 1M entries under 80k gas.
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
    bytes32 public immutable originHash;
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
    /// Anchored roots by tree size; zero for a size never anchored.
    mapping(uint64 size => bytes32 root) public rootAt;
    /// Every key ever registered (Ethereum address of the secp256k1 anchor key) and the SHA-256
    /// of the attestation document that bound it at its latest registration; zero if never.
    mapping(address key => bytes32 attestationSha256) public attestationOf;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// `pcr0` is 48 bytes (SHA-384); all zeros for a debug or dev enclave.
    event EnclaveKeyRegistered(address indexed key, bytes32 indexed attestationSha256, bytes pcr0);
    event EnclaveKeyRevoked(address indexed key);
    event CheckpointAnchored(uint64 indexed size, bytes32 root, address signer);

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

    /// The latest anchored tree size; 0 before the first anchor.
    function latestSize() external view returns (uint64) {
        return head.size;
    }

    /// How many checkpoints have been anchored.
    function anchorCount() external view returns (uint32) {
        return head.count;
    }

    /// The latest anchored checkpoint; (0, 0) before the first.
    function latest() external view returns (uint64 size, bytes32 root) {
        size = head.size;
        root = rootAt[size];
    }

    /// Anchors checkpoint (size, root).
    /// @param consistencyProof RFC 9162 consistency proof from the latest anchored checkpoint to
    ///        this one (empty for the first anchor)
    /// @param signature 65 bytes r ‖ s ‖ v (v = 27 or 28, low s) over `checkpointDigest(size, root)`
    function anchor(uint64 size, bytes32 root, bytes32[] calldata consistencyProof, bytes calldata signature)
        external
    {
        Head memory h = head;
        address signer = _recover(checkpointDigest(size, root), signature);
        if (signer != h.enclaveKey) revert UnregisteredSigner(signer);
        if (size <= h.size) revert SizeNotIncreasing(h.size, size);
        if (h.size == 0) {
            if (consistencyProof.length != 0) revert InconsistentCheckpoint();
        } else if (!verifyConsistency(h.size, size, rootAt[h.size], root, consistencyProof)) {
            revert InconsistentCheckpoint();
        }
        rootAt[size] = root;
        head = Head({enclaveKey: h.enclaveKey, size: size, count: h.count + 1});
        emit CheckpointAnchored(size, root, signer);
    }

    /// The EIP-712 domain separator for this chain and contract.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _domainSeparator();
    }

    function _domainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// The EIP-712 digest the enclave signs for checkpoint (size, root) of this log.
    function checkpointDigest(uint64 size, bytes32 root) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(CHECKPOINT_TYPEHASH, originHash, size, root));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// RFC 9162 §2.1.4.2: whether `proof` shows that the tree of `first` leaves with root
    /// `firstRoot` is a prefix of the tree of `second` leaves with root `secondRoot`.
    /// Requires 0 < first < second (anchors only grow) and at most 64 proof hashes.
    ///
    /// The loop is assembly to keep an anchor cheap (each step is one or two SHA-256 precompile
    /// calls); it follows the RFC's steps and variable names line by line. The Foundry tests
    /// check it against the Rust implementation's vectors and an independent Solidity prover.
    function verifyConsistency(
        uint64 first,
        uint64 second,
        bytes32 firstRoot,
        bytes32 secondRoot,
        bytes32[] calldata proof
    ) public view returns (bool ok) {
        if (first == 0 || first >= second || proof.length > 64) return false;
        assembly ("memory-safe") {
            // Scratch for SHA-256(0x01 ‖ left ‖ right): 0x01 at p, left at p+1, right at p+33.
            let p := mload(0x40)
            mstore8(p, 0x01)
            // Steps 2-3: fn = first - 1, sn = second - 1, shifted right past fn's trailing ones.
            let fn := sub(first, 1)
            let sn := sub(second, 1)
            for {} and(fn, 1) {} {
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            let off := proof.offset
            let end := add(off, shl(5, proof.length))
            // Steps 1 and 4: if first is a power of two (fn is now 0) the path starts with
            // firstRoot, otherwise with the proof's first hash; fr = sr = that start.
            let fr := firstRoot
            let valid := 1
            if fn {
                switch lt(off, end)
                case 0 { valid := 0 }
                default {
                    fr := calldataload(off)
                    off := add(off, 0x20)
                }
            }
            let sr := fr
            // Step 5: each further hash c of the path.
            for {} and(valid, lt(off, end)) { off := add(off, 0x20) } {
                if iszero(sn) {
                    valid := 0
                    break
                }
                let c := calldataload(off)
                switch or(and(fn, 1), eq(fn, sn))
                case 0 {
                    // sr = HASH(0x01 ‖ sr ‖ c)
                    mstore(add(p, 1), sr)
                    mstore(add(p, 33), c)
                    if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
                    sr := mload(0x00)
                }
                default {
                    // fr = HASH(0x01 ‖ c ‖ fr), sr = HASH(0x01 ‖ c ‖ sr)
                    mstore(add(p, 1), c)
                    mstore(add(p, 33), fr)
                    if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
                    fr := mload(0x00)
                    mstore(add(p, 33), sr)
                    if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
                    sr := mload(0x00)
                    // If LSB(fn) is not set, shift until it is or fn is 0.
                    for {} and(iszero(and(fn, 1)), iszero(iszero(fn))) {} {
                        fn := shr(1, fn)
                        sn := shr(1, sn)
                    }
                }
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            // Step 6: fr and sr are the two roots, and sn is used up.
            ok := and(valid, and(iszero(sn), and(eq(fr, firstRoot), eq(sr, secondRoot))))
        }
    }

    /// ecrecover with the checks it lacks: 65 bytes, v in {27, 28}, low s, a real signer.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address signer) {
        if (signature.length != 65) revert BadSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert BadSignature();
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert BadSignature();
    }
}
