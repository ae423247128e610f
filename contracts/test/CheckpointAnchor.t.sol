// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CheckpointAnchor} from "../src/CheckpointAnchor.sol";
import {CheatCodes} from "./Vm.sol";

/// RFC 6962 / RFC 9162 trees and consistency proofs, written independently of the contract's
/// verifier (recursive MTH and SUBPROOF, straight from RFC 9162 §2.1.1 and §2.1.4.1), so the
/// fuzz tests check one implementation against another.
library RefTree {
    function leafHash(uint256 i, uint256 salt) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x00), keccak256(abi.encode(i, salt))));
    }

    function leaves(uint256 n, uint256 salt) internal pure returns (bytes32[] memory l) {
        l = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            l[i] = leafHash(i, salt);
        }
    }

    function split(uint256 n) internal pure returns (uint256 k) {
        k = 1;
        while (k << 1 < n) k <<= 1;
    }

    function mth(bytes32[] memory l, uint256 start, uint256 end) internal pure returns (bytes32) {
        uint256 n = end - start;
        if (n == 1) return l[start];
        uint256 k = split(n);
        return sha256(abi.encodePacked(bytes1(0x01), mth(l, start, start + k), mth(l, start + k, end)));
    }

    function subproof(bytes32[] memory l, uint256 m, uint256 start, uint256 end, bool b)
        internal
        pure
        returns (bytes32[] memory)
    {
        uint256 n = end - start;
        if (m == n) {
            if (b) return new bytes32[](0);
            bytes32[] memory one = new bytes32[](1);
            one[0] = mth(l, start, end);
            return one;
        }
        uint256 k = split(n);
        bytes32[] memory rest;
        bytes32 extra;
        if (m <= k) {
            rest = subproof(l, m, start, start + k, b);
            extra = mth(l, start + k, end);
        } else {
            rest = subproof(l, m - k, start + k, end, false);
            extra = mth(l, start, start + k);
        }
        bytes32[] memory out = new bytes32[](rest.length + 1);
        for (uint256 i = 0; i < rest.length; i++) {
            out[i] = rest[i];
        }
        out[rest.length] = extra;
        return out;
    }

    function proof(bytes32[] memory l, uint256 m, uint256 n) internal pure returns (bytes32[] memory) {
        if (m == 0) return new bytes32[](0);
        return subproof(l, m, 0, n, true);
    }
}

contract CheckpointAnchorTest is CheatCodes {
    event log_named_uint(string key, uint256 val);
    event EnclaveKeyRegistered(address indexed key, bytes32 indexed attestationSha256, bytes pcr0);
    event CheckpointAnchored(uint64 indexed size, bytes32 root);

    string constant ORIGIN = "leadgate.dev/log";
    /// anvil's first account; its first deployment lands at 0x5FbDB…0aa3 (the vectors' contract).
    address constant DEPLOYER = 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266;
    uint256 constant ENCLAVE_KEY = 0xe1;
    uint256 constant OTHER_KEY = 0xe2;
    bytes32 constant ATTESTATION = hex"5a1d0b5a6e0c7b4b6f3c2e1d0a9b8c7d6e5f4a3b2c1d0e0f1a2b3c4d5e6f7a8b";
    bytes constant PCR0 =
        hex"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

    CheckpointAnchor anchor;
    string vectors;

    function setUp() public {
        vectors = vm.readFile("test/vectors/anchor.json");
        anchor = new CheckpointAnchor(ORIGIN);
        anchor.registerEnclaveKey(vm.addr(ENCLAVE_KEY), ATTESTATION, PCR0);
    }

    // ---- helpers ----

    function sign(CheckpointAnchor a, uint256 key, uint64 size, bytes32 root) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, a.checkpointDigest(size, root));
        return abi.encodePacked(r, s, v);
    }

    /// The EIP-2098 compact form of a 65-byte r ‖ s ‖ v: r ‖ vs, vs = (v - 27) << 255 | s.
    function compact(bytes memory sig) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s, uint8 v) = split(sig);
        return abi.encodePacked(r, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    function split(bytes memory sig) internal pure returns (bytes32 r, bytes32 s, uint8 v) {
        require(sig.length == 65, "65-byte signature");
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
    }

    function none() internal pure returns (bytes32[] memory) {
        return new bytes32[](0);
    }

    function anchorTree(bytes32[] memory l, uint64 m, uint64 n) internal {
        bytes32 root = RefTree.mth(l, 0, n);
        anchor.anchor(n, root, RefTree.proof(l, m, n), sign(anchor, ENCLAVE_KEY, n, root));
    }

    function latestSizeOf(CheckpointAnchor a) internal view returns (uint64 size) {
        (size,) = a.latest();
    }

    function check(bool ok, string memory what) internal pure {
        require(ok, what);
    }

    // ---- vectors from the Rust implementation ----

    struct Case {
        uint256 first;
        bytes32 firstRoot;
        bytes32[] proof;
        uint256 second;
        bytes32 secondRoot;
    }

    function cases(string memory key) internal view returns (Case[] memory) {
        return abi.decode(vm.parseJson(vectors, key), (Case[]));
    }

    function test_rustConsistencyVectorsVerify() public view {
        Case[] memory cs = cases(".consistency");
        check(cs.length == 190, "expected every pair 1 <= m < n <= 20");
        checkVectors(cs);
    }

    /// Sizes up to 2^64 - 1, where the verifier's bit arithmetic on the sizes matters.
    function test_rustConsistencyVectorsAtLargeSizes() public view {
        Case[] memory cs = cases(".consistencyLarge");
        check(cs.length == 8, "expected 8 large-size vectors");
        check(cs[0].second == type(uint64).max, "sizes up to 2^64 - 1");
        checkVectors(cs);
    }

    /// Each vector verifies, and fails with either root swapped, any hash tampered, a hash
    /// left off or one added.
    function checkVectors(Case[] memory cs) internal view {
        for (uint256 i = 0; i < cs.length; i++) {
            Case memory c = cs[i];
            uint64 m = uint64(c.first);
            uint64 n = uint64(c.second);
            check(anchor.verifyConsistency(m, n, c.firstRoot, c.secondRoot, c.proof), "vector rejected");
            // Each part of the statement matters.
            check(!anchor.verifyConsistency(m, n, c.secondRoot, c.secondRoot, c.proof), "wrong first root");
            check(!anchor.verifyConsistency(m, n, c.firstRoot, c.firstRoot, c.proof), "wrong second root");
            for (uint256 j = 0; j < c.proof.length; j++) {
                bytes32 saved = c.proof[j];
                c.proof[j] = saved ^ bytes32(uint256(1));
                check(!anchor.verifyConsistency(m, n, c.firstRoot, c.secondRoot, c.proof), "tampered proof");
                c.proof[j] = saved;
            }
            bytes32[] memory longer = new bytes32[](c.proof.length + 1);
            for (uint256 j = 0; j < c.proof.length; j++) {
                longer[j] = c.proof[j];
            }
            longer[c.proof.length] = c.proof.length > 0 ? c.proof[0] : c.firstRoot;
            check(!anchor.verifyConsistency(m, n, c.firstRoot, c.secondRoot, longer), "longer proof");
            if (c.proof.length > 0) {
                bytes32[] memory shorter = new bytes32[](c.proof.length - 1);
                for (uint256 j = 0; j < shorter.length; j++) {
                    shorter[j] = c.proof[j];
                }
                check(!anchor.verifyConsistency(m, n, c.firstRoot, c.secondRoot, shorter), "short proof");
            }
        }
    }

    function test_rustSignaturesAnchorAtTheVectorDeployment() public {
        vm.chainId(vm.parseJsonUint(vectors, ".chainId"));
        vm.setNonce(DEPLOYER, 0);
        vm.startPrank(DEPLOYER);
        CheckpointAnchor a = new CheckpointAnchor(vm.parseJsonString(vectors, ".origin"));
        check(address(a) == vm.parseJsonAddress(vectors, ".contract"), "deployment address");
        check(a.domainSeparator() == vm.parseJsonBytes32(vectors, ".domainSeparator"), "domain separator");
        address signer = vm.parseJsonAddress(vectors, ".signer");
        check(signer == vm.addr(vm.parseJsonUint(vectors, ".signerKey")), "signer address");
        a.registerEnclaveKey(signer, ATTESTATION, PCR0);
        vm.stopPrank();
        for (uint256 i = 0; i < 4; i++) {
            string memory p = string.concat(".signed[", vm_toString(i), "]");
            uint64 size = uint64(vm.parseJsonUint(vectors, string.concat(p, ".size")));
            bytes32 root = vm.parseJsonBytes32(vectors, string.concat(p, ".root"));
            check(a.checkpointDigest(size, root) == vm.parseJsonBytes32(vectors, string.concat(p, ".digest")), "digest");
            bytes32[] memory proof = abi.decode(vm.parseJson(vectors, string.concat(p, ".proof")), (bytes32[]));
            bytes memory sig = abi.decode(vm.parseJson(vectors, string.concat(p, ".signature")), (bytes));
            bytes memory compactSig = abi.decode(vm.parseJson(vectors, string.concat(p, ".compactSignature")), (bytes));
            check(keccak256(compact(sig)) == keccak256(compactSig), "Rust's EIP-2098 form");
            // The host submits the compact form; either form anchors.
            a.anchor(size, root, proof, i % 2 == 0 ? compactSig : sig);
            (uint64 ls, bytes32 lr) = a.latest();
            check(ls == size && lr == root && a.rootAt(size) == root, "latest");
        }
        check(a.anchorCount() == 4, "count");
    }

    function vm_toString(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        bytes memory b;
        while (v > 0) {
            // casting to 'uint8' is safe because 48 + v % 10 < 58
            // forge-lint: disable-next-line(unsafe-typecast)
            b = abi.encodePacked(bytes1(uint8(48 + v % 10)), b);
            v /= 10;
        }
        return string(b);
    }

    /// Gas of `anchor` after a first anchor, on the vectors' 1k, 1M and 1B-entry logs. Run
    /// with `forge test --isolate -vv --match-test gas` for whole-transaction figures.
    function test_gasPerAnchor() public {
        Case[] memory cs = cases(".gas");
        for (uint256 i = 0; i < cs.length; i++) {
            Case memory c = cs[i];
            uint256 snap = vm.snapshotState();
            uint64 m = uint64(c.first);
            uint64 n = uint64(c.second);
            anchor.anchor(m, c.firstRoot, none(), sign(anchor, ENCLAVE_KEY, m, c.firstRoot));
            // The host submits the compact form (EIP-2098): 32 fewer calldata bytes.
            bytes memory sig = compact(sign(anchor, ENCLAVE_KEY, n, c.secondRoot));
            anchor.anchor(n, c.secondRoot, c.proof, sig);
            string memory name = string.concat("size ", vm_toString(n), " proof ", vm_toString(c.proof.length));
            emit log_named_uint(name, vm.snapshotGasLastCall("anchor", name));
            check(anchor.rootAt(n) == c.secondRoot, "anchored");
            vm.revertToState(snap);
        }
    }

    // ---- accept and reject ----

    function test_firstAnchorThenGrowth() public {
        bytes32[] memory l = RefTree.leaves(40, 1);
        bytes32 root5 = RefTree.mth(l, 0, 5);
        vm.expectEmit(true, true, true, true);
        emit CheckpointAnchored(5, root5);
        anchor.anchor(5, root5, none(), sign(anchor, ENCLAVE_KEY, 5, root5));
        anchorTree(l, 5, 8);
        anchorTree(l, 8, 33);
        anchorTree(l, 33, 40);
        (uint64 size, bytes32 root) = anchor.latest();
        check(size == 40 && root == RefTree.mth(l, 0, 40), "latest");
        check(anchor.rootAt(5) == root5 && anchor.rootAt(33) == RefTree.mth(l, 0, 33), "history");
        check(anchor.anchorCount() == 4, "count");
    }

    /// The storage the assembly writes: roots at keccak256("leadgate.CheckpointAnchor.rootAt")
    /// + size, and `head` (slot 2, after `origin` and `owner`) packed as key | size << 160 |
    /// count << 224.
    function test_storageLayout() public {
        bytes32[] memory l = RefTree.leaves(30, 13);
        anchorTree(l, 0, 7);
        anchorTree(l, 7, 30);
        uint256 roots = uint256(keccak256("leadgate.CheckpointAnchor.rootAt"));
        check(vm.load(address(anchor), bytes32(roots + 7)) == RefTree.mth(l, 0, 7), "root of 7");
        check(vm.load(address(anchor), bytes32(roots + 30)) == RefTree.mth(l, 0, 30), "root of 30");
        check(vm.load(address(anchor), bytes32(roots + 8)) == bytes32(0), "no root of 8");
        uint256 head = uint256(vm.load(address(anchor), bytes32(uint256(2))));
        check(head == uint256(uint160(vm.addr(ENCLAVE_KEY))) | (30 << 160) | (2 << 224), "packed head");
        check(anchor.enclaveKey() == vm.addr(ENCLAVE_KEY) && anchor.anchorCount() == 2, "getters");
    }

    function test_anyoneMaySubmit() public {
        bytes32[] memory l = RefTree.leaves(3, 2);
        bytes32 root = RefTree.mth(l, 0, 3);
        bytes memory sig = sign(anchor, ENCLAVE_KEY, 3, root);
        vm.prank(address(0xBEEF));
        anchor.anchor(3, root, none(), sig);
        check(anchor.rootAt(3) == root, "anchored by a stranger");
    }

    function test_rejectsUnregisteredKey() public {
        bytes32 root = RefTree.mth(RefTree.leaves(3, 3), 0, 3);
        bytes memory sig = sign(anchor, OTHER_KEY, 3, root);
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.UnregisteredSigner.selector, vm.addr(OTHER_KEY)));
        anchor.anchor(3, root, none(), sig);
    }

    function test_rejectsRollbackAndReplay() public {
        bytes32[] memory l = RefTree.leaves(20, 4);
        anchorTree(l, 0, 10);
        bytes32 root10 = RefTree.mth(l, 0, 10);
        bytes memory sig10 = sign(anchor, ENCLAVE_KEY, 10, root10);
        anchorTree(l, 10, 20);
        // Rolling back to an earlier, genuinely signed checkpoint.
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.SizeNotIncreasing.selector, uint64(20), uint64(10)));
        anchor.anchor(10, root10, none(), sig10);
        // Replaying the latest anchor.
        bytes32 root20 = RefTree.mth(l, 0, 20);
        bytes memory sig20 = sign(anchor, ENCLAVE_KEY, 20, root20);
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.SizeNotIncreasing.selector, uint64(20), uint64(20)));
        anchor.anchor(20, root20, none(), sig20);
    }

    /// A fork: the enclave key signs (say, after a compromised host fed it a rewritten history)
    /// a tree that rewrites an anchored leaf. No proof links it to the anchored root.
    function test_rejectsFork() public {
        bytes32[] memory l = RefTree.leaves(16, 5);
        anchorTree(l, 0, 9);
        bytes32[] memory forked = RefTree.leaves(16, 5);
        forked[3] = RefTree.leafHash(3, 999);
        bytes32 forkRoot = RefTree.mth(forked, 0, 16);
        bytes memory sig = sign(anchor, ENCLAVE_KEY, 16, forkRoot);
        // The forked tree's own proof, and the honest tree's proof, both fail.
        bytes32[] memory forkProof = RefTree.proof(forked, 9, 16);
        vm.expectRevert(CheckpointAnchor.InconsistentCheckpoint.selector);
        anchor.anchor(16, forkRoot, forkProof, sig);
        bytes32[] memory honestProof = RefTree.proof(l, 9, 16);
        vm.expectRevert(CheckpointAnchor.InconsistentCheckpoint.selector);
        anchor.anchor(16, forkRoot, honestProof, sig);
        // The honest extension still anchors.
        anchorTree(l, 9, 16);
    }

    function test_rejectsReplayOnAnotherChain() public {
        bytes32 root = RefTree.mth(RefTree.leaves(3, 6), 0, 3);
        bytes memory sig = sign(anchor, ENCLAVE_KEY, 3, root);
        vm.chainId(1);
        // The digest differs, so the signature recovers to some other address.
        vm.expectRevert();
        anchor.anchor(3, root, none(), sig);
        vm.chainId(31337);
        anchor.anchor(3, root, none(), sig);
    }

    function test_rejectsReplayOnAnotherContract() public {
        CheckpointAnchor other = new CheckpointAnchor(ORIGIN);
        other.registerEnclaveKey(vm.addr(ENCLAVE_KEY), ATTESTATION, PCR0);
        bytes32 root = RefTree.mth(RefTree.leaves(3, 7), 0, 3);
        bytes memory sig = sign(anchor, ENCLAVE_KEY, 3, root);
        vm.expectRevert();
        other.anchor(3, root, none(), sig);
        // Another log (origin) with the same key and chain: also refused.
        CheckpointAnchor otherLog = new CheckpointAnchor("other.example/log");
        otherLog.registerEnclaveKey(vm.addr(ENCLAVE_KEY), ATTESTATION, PCR0);
        vm.expectRevert();
        otherLog.anchor(3, root, none(), sig);
        anchor.anchor(3, root, none(), sig);
    }

    function test_rejectsMalformedSignatures() public {
        bytes32 root = RefTree.mth(RefTree.leaves(3, 8), 0, 3);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ENCLAVE_KEY, anchor.checkpointDigest(3, root));
        uint8 otherV = v == 27 ? 28 : 27;
        // Neither 64 nor 65 bytes.
        vm.expectRevert(CheckpointAnchor.BadSignature.selector);
        anchor.anchor(3, root, none(), abi.encodePacked(r, s, v, uint8(0)));
        vm.expectRevert(CheckpointAnchor.BadSignature.selector);
        anchor.anchor(3, root, none(), abi.encodePacked(r, bytes31(s)));
        // v must be 27 or 28.
        vm.expectRevert(CheckpointAnchor.BadSignature.selector);
        anchor.anchor(3, root, none(), abi.encodePacked(r, s, v - 27));
        // The high-s twin (n - s, flipped v) is a valid ECDSA signature, refused as malleable.
        uint256 n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141;
        bytes32 highS = bytes32(n - uint256(s));
        vm.expectRevert(CheckpointAnchor.BadSignature.selector);
        anchor.anchor(3, root, none(), abi.encodePacked(r, highS, otherV));
        vm.expectRevert(CheckpointAnchor.BadSignature.selector);
        anchor.anchor(3, root, none(), abi.encodePacked(bytes32(0), bytes32(0), v));
        // In the compact form, the other parity recovers another key (or none), and the high-s
        // twin cannot be written at all (its s has the top bit set; cleared, it is not the twin).
        vm.expectRevert();
        anchor.anchor(3, root, none(), compact(abi.encodePacked(r, s, otherV)));
        vm.expectRevert();
        anchor.anchor(3, root, none(), abi.encodePacked(r, highS));
        anchor.anchor(3, root, none(), abi.encodePacked(r, s, v));
    }

    /// The 64-byte EIP-2098 form of a signature anchors exactly as its 65-byte form does.
    function test_acceptsCompactSignatures() public {
        bytes32[] memory l = RefTree.leaves(12, 12);
        bytes32 root5 = RefTree.mth(l, 0, 5);
        anchor.anchor(5, root5, none(), compact(sign(anchor, ENCLAVE_KEY, 5, root5)));
        bytes32 root12 = RefTree.mth(l, 0, 12);
        bytes memory full = sign(anchor, ENCLAVE_KEY, 12, root12);
        // Both parities occur: check the compact form against its full form's v.
        (,, uint8 v) = split(full);
        bytes memory c = compact(full);
        check(c.length == 64 && (uint8(c[32]) >> 7) == v - 27, "parity in the top bit of vs");
        anchor.anchor(12, root12, RefTree.proof(l, 5, 12), c);
        check(anchor.rootAt(12) == root12 && anchor.anchorCount() == 2, "anchored with compact signatures");
        // A compact signature by another key is refused as the full one is.
        bytes32 root13 = RefTree.mth(RefTree.leaves(13, 12), 0, 13);
        bytes memory other = compact(sign(anchor, OTHER_KEY, 13, root13));
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.UnregisteredSigner.selector, vm.addr(OTHER_KEY)));
        anchor.anchor(13, root13, new bytes32[](0), other);
    }

    function test_rejectsProofOnFirstAnchorAndBadProofs() public {
        bytes32[] memory l = RefTree.leaves(12, 9);
        bytes32 root = RefTree.mth(l, 0, 6);
        bytes32[] memory junk = new bytes32[](1);
        bytes memory sig6 = sign(anchor, ENCLAVE_KEY, 6, root);
        vm.expectRevert(CheckpointAnchor.InconsistentCheckpoint.selector);
        anchor.anchor(6, root, junk, sig6);
        anchorTree(l, 0, 6);
        bytes32 root12 = RefTree.mth(l, 0, 12);
        bytes memory sig = sign(anchor, ENCLAVE_KEY, 12, root12);
        vm.expectRevert(CheckpointAnchor.InconsistentCheckpoint.selector);
        anchor.anchor(12, root12, none(), sig);
        // A proof from another size (6 is not what is anchored when asking from 4).
        bytes32[] memory wrongFrom = RefTree.proof(l, 4, 12);
        vm.expectRevert(CheckpointAnchor.InconsistentCheckpoint.selector);
        anchor.anchor(12, root12, wrongFrom, sig);
        anchor.anchor(12, root12, RefTree.proof(l, 6, 12), sig);
    }

    function test_keyRotation() public {
        bytes32[] memory l = RefTree.leaves(30, 10);
        anchorTree(l, 0, 10);
        // The enclave is rebuilt: the owner registers the new key, which rotates to it.
        bytes32 newAttestation = sha256("new attestation document");
        bytes memory newPcr0 = abi.encodePacked(sha256("a"), bytes16(0));
        vm.expectEmit(true, true, false, true);
        emit EnclaveKeyRegistered(vm.addr(OTHER_KEY), newAttestation, newPcr0);
        anchor.registerEnclaveKey(vm.addr(OTHER_KEY), newAttestation, newPcr0);
        check(anchor.enclaveKey() == vm.addr(OTHER_KEY), "new key active");
        check(anchor.attestationOf(vm.addr(OTHER_KEY)) == newAttestation, "new key bound");
        check(anchor.attestationOf(vm.addr(ENCLAVE_KEY)) == ATTESTATION, "old binding kept");
        bytes32 root20 = RefTree.mth(l, 0, 20);
        bytes32[] memory proof = RefTree.proof(l, 10, 20);
        bytes memory oldSig = sign(anchor, ENCLAVE_KEY, 20, root20);
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.UnregisteredSigner.selector, vm.addr(ENCLAVE_KEY)));
        anchor.anchor(20, root20, proof, oldSig);
        // The new key continues the same history: its checkpoint must extend the old key's.
        anchor.anchor(20, root20, proof, sign(anchor, OTHER_KEY, 20, root20));
        check(anchor.rootAt(10) == RefTree.mth(l, 0, 10), "old anchors stay");
        // Revoking the active key stops anchoring altogether.
        anchor.revokeEnclaveKey(vm.addr(OTHER_KEY));
        bytes32 root30 = RefTree.mth(l, 0, 30);
        bytes32[] memory proof30 = RefTree.proof(l, 20, 30);
        bytes memory sig30 = sign(anchor, OTHER_KEY, 30, root30);
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.UnregisteredSigner.selector, vm.addr(OTHER_KEY)));
        anchor.anchor(30, root30, proof30, sig30);
        check(anchor.enclaveKey() == address(0) && latestSizeOf(anchor) == 20, "stopped");
    }

    function test_onlyOwnerManagesKeys() public {
        vm.prank(address(0xBAD));
        vm.expectRevert(CheckpointAnchor.NotOwner.selector);
        anchor.registerEnclaveKey(vm.addr(OTHER_KEY), ATTESTATION, PCR0);
        vm.prank(address(0xBAD));
        vm.expectRevert(CheckpointAnchor.NotOwner.selector);
        anchor.revokeEnclaveKey(vm.addr(ENCLAVE_KEY));
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.BadPcr0Length.selector, uint256(32)));
        anchor.registerEnclaveKey(vm.addr(OTHER_KEY), ATTESTATION, abi.encodePacked(bytes32(0)));
        vm.expectRevert(CheckpointAnchor.ZeroAttestation.selector);
        anchor.registerEnclaveKey(vm.addr(OTHER_KEY), bytes32(0), PCR0);
        vm.expectRevert(abi.encodeWithSelector(CheckpointAnchor.NotRegistered.selector, vm.addr(OTHER_KEY)));
        anchor.revokeEnclaveKey(vm.addr(OTHER_KEY));
        anchor.transferOwnership(address(0xCAFE));
        vm.expectRevert(CheckpointAnchor.NotOwner.selector);
        anchor.registerEnclaveKey(vm.addr(OTHER_KEY), ATTESTATION, PCR0);
        vm.prank(address(0xCAFE));
        anchor.registerEnclaveKey(vm.addr(OTHER_KEY), ATTESTATION, PCR0);
    }

    // ---- fuzzed trees ----

    /// Any consistency proof of the reference implementation verifies; a rewritten leaf below
    /// `m` (a fork) or a changed proof hash makes it fail.
    function testFuzz_consistency(uint8 mSeed, uint8 nSeed, uint256 salt, uint8 pick) public view {
        uint64 n = 2 + uint64(nSeed) % 70;
        uint64 m = 1 + uint64(mSeed) % (n - 1);
        bytes32[] memory l = RefTree.leaves(n, salt);
        bytes32 r1 = RefTree.mth(l, 0, m);
        bytes32 r2 = RefTree.mth(l, 0, n);
        bytes32[] memory proof = RefTree.proof(l, m, n);
        check(anchor.verifyConsistency(m, n, r1, r2, proof), "honest proof");
        checkFork(m, n, r1, salt, pick % m);
        if (proof.length > 0) {
            proof[pick % proof.length] ^= bytes32(uint256(1) << (pick % 256));
            check(!anchor.verifyConsistency(m, n, r1, r2, proof), "tampered");
        }
    }

    /// Fork: rewrite leaf `at` (< m) in the new tree; its own proof must not link it to `r1`.
    function checkFork(uint64 m, uint64 n, bytes32 r1, uint256 salt, uint256 at) internal view {
        bytes32[] memory forked = RefTree.leaves(n, salt);
        forked[at] = RefTree.leafHash(at, ~salt);
        bytes32 forkRoot = RefTree.mth(forked, 0, n);
        bytes32[] memory proof = RefTree.proof(forked, m, n);
        check(!anchor.verifyConsistency(m, n, r1, forkRoot, proof), "fork");
    }

    /// A run of anchors at fuzzed growing sizes all land; the history is what was anchored.
    function testFuzz_anchorSequence(uint256 salt, uint8[6] memory steps) public {
        bytes32[] memory l = RefTree.leaves(200, salt);
        uint64 last = 0;
        for (uint256 i = 0; i < steps.length; i++) {
            uint64 next = last + 1 + uint64(steps[i] % 30);
            anchorTree(l, last, next);
            last = next;
        }
        (uint64 size, bytes32 root) = anchor.latest();
        check(size == last && root == RefTree.mth(l, 0, last), "latest");
        check(anchor.anchorCount() == steps.length, "count");
    }
}
