// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CheckpointAnchor} from "../src/CheckpointAnchor.sol";
import {IERC20, IEnclaveKeySource, LeadEscrow} from "../src/LeadEscrow.sol";
import {TestUsdc} from "../src/TestUsdc.sol";
import {CheatCodes} from "./Vm.sol";

/// Settlement signing, written from EIP-712 §"Definition of hashStruct" independently of the
/// contract's `settlementDigest`, so the tests check one against the other.
library SettlementSig {
    function digest(
        uint256 chainId,
        address escrow,
        bytes16 auctionId,
        address buyer,
        address seller,
        uint256 price,
        uint16 feeBps,
        address feeRecipient
    ) internal pure returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("leadgate LeadEscrow"),
                keccak256("1"),
                chainId,
                escrow
            )
        );
        bytes32 typeHash = keccak256(
            "Settlement(bytes16 auctionId,address buyer,address seller,uint256 price,uint16 feeBps,address feeRecipient)"
        );
        // bytes16 is encoded left-aligned in its 32-byte word, as abi.encode does (EIP-712
        // encodeData: atomic values as in the ABI).
        bytes32 structHash = keccak256(abi.encode(typeHash, auctionId, buyer, seller, price, feeBps, feeRecipient));
        return keccak256(abi.encodePacked(bytes2(0x1901), domain, structHash));
    }
}

/// A token whose transfers return false instead of reverting.
contract FalseToken {
    function transfer(address, uint256) external pure returns (bool) {
        return false;
    }

    function transferFrom(address, address, uint256) external pure returns (bool) {
        return false;
    }

    function balanceOf(address) external pure returns (uint256) {
        return 0;
    }
}

contract LeadEscrowTest is CheatCodes {
    event Settled(bytes16 indexed auctionId, address indexed buyer, address indexed seller, uint256 price, uint256 fee);

    uint256 constant ENCLAVE_KEY = 0xe1;
    uint256 constant NEXT_KEY = 0xe3;
    uint256 constant FORGER_KEY = 0xbad;
    bytes32 constant ATTESTATION = keccak256("attestation document");
    bytes constant PCR0 = new bytes(48);
    uint64 constant DELAY = 2 days;
    uint16 constant FEE_BPS = 250;
    address constant FEE_TO = address(0xfee);
    address constant BUYER = address(0xb0b);
    address constant OTHER_BUYER = address(0xb0c);
    address constant SELLER = address(0x5e11);
    address constant OTHER_SELLER = address(0x5e12);
    bytes16 constant AUCTION = bytes16(hex"0123456789abcdef0123456789abcdef");
    uint256 constant USDC = 1e6;

    CheckpointAnchor anchor;
    TestUsdc usdc;
    LeadEscrow escrow;

    function setUp() public {
        vm.warp(1_800_000_000);
        anchor = new CheckpointAnchor("leadgate.dev/log");
        anchor.registerEnclaveKey(vm.addr(ENCLAVE_KEY), ATTESTATION, PCR0);
        usdc = new TestUsdc();
        escrow = new LeadEscrow(IERC20(address(usdc)), IEnclaveKeySource(address(anchor)), FEE_BPS, FEE_TO, DELAY);
        fund(BUYER, 1_000 * USDC);
        fund(OTHER_BUYER, 1_000 * USDC);
    }

    // ---- helpers ----

    function fund(address buyer, uint256 amount) internal {
        usdc.mint(buyer, amount);
        vm.prank(buyer);
        usdc.approve(address(escrow), type(uint256).max);
    }

    function depositAs(address buyer, uint256 amount) internal {
        vm.prank(buyer);
        escrow.deposit(amount);
    }

    function sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function signed(uint256 key, bytes16 auctionId, address buyer, address seller, uint256 price)
        internal
        view
        returns (bytes memory)
    {
        return sign(key, escrow.settlementDigest(auctionId, buyer, seller, price));
    }

    function compact(bytes memory sig) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        return abi.encodePacked(r, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    function balanceOf(address buyer) internal view returns (uint256 balance) {
        (balance,,) = escrow.accountOf(buyer);
    }

    function check(bool ok, string memory what) internal pure {
        require(ok, what);
    }

    // ---- deployment ----

    function test_constructorRefusesBadTerms() public {
        IERC20 t = IERC20(address(usdc));
        IEnclaveKeySource a = IEnclaveKeySource(address(anchor));
        vm.expectRevert(LeadEscrow.ZeroAddress.selector);
        new LeadEscrow(IERC20(address(0)), a, 0, address(0), DELAY);
        vm.expectRevert(LeadEscrow.ZeroAddress.selector);
        new LeadEscrow(t, IEnclaveKeySource(address(0)), 0, address(0), DELAY);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.BadFee.selector, 10_001, FEE_TO));
        new LeadEscrow(t, a, 10_001, FEE_TO, DELAY);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.BadFee.selector, 100, address(0)));
        new LeadEscrow(t, a, 100, address(0), DELAY);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.BadFee.selector, 0, FEE_TO));
        new LeadEscrow(t, a, 0, FEE_TO, DELAY);
        vm.expectRevert(LeadEscrow.ZeroDelay.selector);
        new LeadEscrow(t, a, 0, address(0), 0);
        LeadEscrow free = new LeadEscrow(t, a, 0, address(0), DELAY);
        check(free.feeBps() == 0 && free.feeRecipient() == address(0), "zero fee by default");
    }

    function test_digestMatchesAnIndependentEncoding() public view {
        bytes32 expected =
            SettlementSig.digest(block.chainid, address(escrow), AUCTION, BUYER, SELLER, 12 * USDC, FEE_BPS, FEE_TO);
        check(escrow.settlementDigest(AUCTION, BUYER, SELLER, 12 * USDC) == expected, "digest");
    }

    // ---- deposits and withdrawals ----

    function test_depositAndTwoStepWithdrawal() public {
        depositAs(BUYER, 100 * USDC);
        check(balanceOf(BUYER) == 100 * USDC, "balance");
        check(usdc.balanceOf(address(escrow)) == 100 * USDC, "escrow holds it");

        vm.prank(BUYER);
        vm.expectRevert(LeadEscrow.NoWithdrawalRequested.selector);
        escrow.withdraw();

        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.InsufficientBalance.selector, 100 * USDC, 101 * USDC));
        escrow.requestWithdrawal(101 * USDC);

        vm.prank(BUYER);
        escrow.requestWithdrawal(40 * USDC);
        (uint256 balance, uint256 requested, uint64 unlockAt) = escrow.accountOf(BUYER);
        check(balance == 100 * USDC && requested == 40 * USDC, "request recorded, balance kept");
        check(unlockAt == block.timestamp + DELAY, "unlock time");

        vm.warp(unlockAt - 1);
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.WithdrawalLocked.selector, unlockAt));
        escrow.withdraw();

        vm.warp(unlockAt);
        uint256 before = usdc.balanceOf(BUYER);
        vm.prank(BUYER);
        escrow.withdraw();
        check(usdc.balanceOf(BUYER) == before + 40 * USDC, "paid out");
        (balance, requested, unlockAt) = escrow.accountOf(BUYER);
        check(balance == 60 * USDC && requested == 0 && unlockAt == 0, "request consumed");

        vm.prank(BUYER);
        vm.expectRevert(LeadEscrow.NoWithdrawalRequested.selector);
        escrow.withdraw();
    }

    function test_aNewRequestRestartsTheDelayAndZeroCancels() public {
        depositAs(BUYER, 100 * USDC);
        vm.prank(BUYER);
        escrow.requestWithdrawal(10 * USDC);
        vm.warp(block.timestamp + DELAY - 10);
        vm.prank(BUYER);
        escrow.requestWithdrawal(20 * USDC);
        (,, uint64 unlockAt) = escrow.accountOf(BUYER);
        check(unlockAt == block.timestamp + DELAY, "restarted");
        vm.prank(BUYER);
        escrow.requestWithdrawal(0);
        vm.warp(block.timestamp + DELAY);
        vm.prank(BUYER);
        vm.expectRevert(LeadEscrow.NoWithdrawalRequested.selector);
        escrow.withdraw();
    }

    function test_depositRefusesZeroAndAFailingToken() public {
        vm.prank(BUYER);
        vm.expectRevert(LeadEscrow.ZeroAmount.selector);
        escrow.deposit(0);
        // No allowance: the token reverts, the escrow credits nothing.
        vm.prank(SELLER);
        vm.expectRevert(LeadEscrow.TokenCallFailed.selector);
        escrow.deposit(1);
        check(balanceOf(SELLER) == 0, "nothing credited");
        // A token that answers false.
        LeadEscrow bad =
            new LeadEscrow(IERC20(address(new FalseToken())), IEnclaveKeySource(address(anchor)), 0, address(0), DELAY);
        vm.prank(BUYER);
        vm.expectRevert(LeadEscrow.TokenCallFailed.selector);
        bad.deposit(1);
    }

    function test_depositOver96BitsRefused() public {
        usdc.mint(BUYER, uint256(type(uint96).max));
        depositAs(BUYER, uint256(type(uint96).max) - 5);
        vm.prank(BUYER);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.AmountTooLarge.selector, 6));
        escrow.deposit(6);
    }

    // ---- settlement ----

    function test_settlePaysSellerAndFeeOnce() public {
        depositAs(BUYER, 100 * USDC);
        uint256 price = 12_345_678; // 12.345678 USDC
        uint256 fee = price * FEE_BPS / 10_000; // 308,641 (rounded down)
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, price);
        vm.expectEmit(true, true, true, true);
        emit Settled(AUCTION, BUYER, SELLER, price, fee);
        vm.prank(address(0xdead)); // anyone may submit
        escrow.settle(AUCTION, BUYER, SELLER, price, sig);
        check(escrow.settled(AUCTION), "marked settled");
        check(balanceOf(BUYER) == 100 * USDC - price, "buyer paid the price");
        check(escrow.earnings(SELLER) == price - fee, "seller credited price - fee");
        check(escrow.earnings(FEE_TO) == fee && fee == 308_641, "fee credited");

        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.AlreadySettled.selector, AUCTION));
        escrow.settle(AUCTION, BUYER, SELLER, price, sig);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.AlreadySettled.selector, AUCTION));
        escrow.settle(AUCTION, BUYER, SELLER, price, compact(sig));
        check(balanceOf(BUYER) == 100 * USDC - price, "paid once");

        vm.prank(SELLER);
        escrow.claim();
        check(usdc.balanceOf(SELLER) == price - fee && escrow.earnings(SELLER) == 0, "seller claimed");
        vm.prank(FEE_TO);
        escrow.claim();
        check(usdc.balanceOf(FEE_TO) == fee, "fee claimed");
        vm.prank(SELLER);
        vm.expectRevert(LeadEscrow.NothingToClaim.selector);
        escrow.claim();
        check(usdc.balanceOf(address(escrow)) == 100 * USDC - price, "escrow holds the rest");
    }

    function test_zeroFeePaysTheSellerEverything() public {
        LeadEscrow free =
            new LeadEscrow(IERC20(address(usdc)), IEnclaveKeySource(address(anchor)), 0, address(0), DELAY);
        vm.startPrank(BUYER);
        usdc.approve(address(free), type(uint256).max);
        free.deposit(10 * USDC);
        vm.stopPrank();
        free.settle(AUCTION, BUYER, SELLER, 7 * USDC, sign(ENCLAVE_KEY, free.settlementDigest(AUCTION, BUYER, SELLER, 7 * USDC)));
        check(free.earnings(SELLER) == 7 * USDC && free.earnings(address(0)) == 0, "all to the seller");
    }

    function test_forgedSettlementRefused() public {
        depositAs(BUYER, 100 * USDC);
        bytes memory forged = signed(FORGER_KEY, AUCTION, BUYER, SELLER, USDC);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.UnregisteredSigner.selector, vm.addr(FORGER_KEY)));
        escrow.settle(AUCTION, BUYER, SELLER, USDC, forged);
        check(balanceOf(BUYER) == 100 * USDC && !escrow.settled(AUCTION), "nothing moved");
    }

    function test_aSettlementCannotBeRedirected() public {
        depositAs(BUYER, 100 * USDC);
        depositAs(OTHER_BUYER, 100 * USDC);
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, 5 * USDC);
        // Every signed field changed in turn: another seller, buyer, price, auction.
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, BUYER, OTHER_SELLER, 5 * USDC, sig);
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, OTHER_BUYER, SELLER, 5 * USDC, sig);
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, BUYER, SELLER, 6 * USDC, sig);
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, BUYER, SELLER, 4 * USDC, sig);
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(bytes16(uint128(1)), BUYER, SELLER, 5 * USDC, sig);
        check(escrow.earnings(OTHER_SELLER) == 0 && balanceOf(OTHER_BUYER) == 100 * USDC, "nothing moved");
        escrow.settle(AUCTION, BUYER, SELLER, 5 * USDC, sig);
        check(escrow.earnings(SELLER) == 5 * USDC - 5 * USDC * FEE_BPS / 10_000, "the signed one pays");
    }

    function test_settlementForOtherFeeTermsRefused() public {
        depositAs(BUYER, 100 * USDC);
        // Signed for a zero fee, submitted to the deployment that takes 2.5 %.
        bytes32 d = SettlementSig.digest(block.chainid, address(escrow), AUCTION, BUYER, SELLER, USDC, 0, address(0));
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, sign(ENCLAVE_KEY, d));
        // Signed for another fee recipient.
        d = SettlementSig.digest(block.chainid, address(escrow), AUCTION, BUYER, SELLER, USDC, FEE_BPS, address(1));
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, sign(ENCLAVE_KEY, d));
        check(!escrow.settled(AUCTION), "not settled");
    }

    function test_crossChainAndCrossContractReplayRefused() public {
        depositAs(BUYER, 100 * USDC);
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, USDC);
        // The same escrow on a fork with another chain id.
        uint256 snapshot = vm.snapshotState();
        vm.chainId(block.chainid + 1);
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, sig);
        vm.revertToState(snapshot);
        // Another escrow with the same terms, anchor and buyer.
        LeadEscrow twin =
            new LeadEscrow(IERC20(address(usdc)), IEnclaveKeySource(address(anchor)), FEE_BPS, FEE_TO, DELAY);
        vm.startPrank(BUYER);
        usdc.approve(address(twin), type(uint256).max);
        twin.deposit(100 * USDC);
        vm.stopPrank();
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        twin.settle(AUCTION, BUYER, SELLER, USDC, sig);
        // Signed for another chain id, submitted here.
        bytes32 d = SettlementSig.digest(block.chainid + 1, address(escrow), AUCTION, BUYER, SELLER, USDC, FEE_BPS, FEE_TO);
        vm.expectPartialRevert(LeadEscrow.UnregisteredSigner.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, sign(ENCLAVE_KEY, d));
        escrow.settle(AUCTION, BUYER, SELLER, USDC, sig);
    }

    function test_rotatedKeyStopsCountingAndTheNewOneCounts() public {
        depositAs(BUYER, 100 * USDC);
        bytes memory old = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, USDC);
        anchor.registerEnclaveKey(vm.addr(NEXT_KEY), keccak256("next attestation"), PCR0);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.UnregisteredSigner.selector, vm.addr(ENCLAVE_KEY)));
        escrow.settle(AUCTION, BUYER, SELLER, USDC, old);
        // The new enclave re-signs the logged close; that one pays.
        escrow.settle(AUCTION, BUYER, SELLER, USDC, signed(NEXT_KEY, AUCTION, BUYER, SELLER, USDC));
        check(escrow.settled(AUCTION), "settled with the new key");
        // And the old key's signature cannot pay it again after a rotation back either.
        anchor.registerEnclaveKey(vm.addr(ENCLAVE_KEY), ATTESTATION, PCR0);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.AlreadySettled.selector, AUCTION));
        escrow.settle(AUCTION, BUYER, SELLER, USDC, old);
    }

    function test_revokedKeyRefused() public {
        depositAs(BUYER, 100 * USDC);
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, USDC);
        anchor.revokeEnclaveKey(vm.addr(ENCLAVE_KEY));
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.UnregisteredSigner.selector, vm.addr(ENCLAVE_KEY)));
        escrow.settle(AUCTION, BUYER, SELLER, USDC, sig);
        check(!escrow.settled(AUCTION) && balanceOf(BUYER) == 100 * USDC, "nothing moved");
    }

    function test_malformedSignaturesRefused() public {
        depositAs(BUYER, 100 * USDC);
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, USDC);
        (bytes32 r, bytes32 s, uint8 v) = (bytes32(0), bytes32(0), 0);
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        uint256 n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141;
        // The malleable twin (n - s, flipped v) recovers the same key: refused (EIP-2).
        bytes memory twin = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.expectRevert(LeadEscrow.BadSignature.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, twin);
        vm.expectRevert(LeadEscrow.BadSignature.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, abi.encodePacked(r, s, uint8(29)));
        vm.expectRevert(LeadEscrow.BadSignature.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, abi.encodePacked(r, bytes31(s)));
        vm.expectRevert(LeadEscrow.BadSignature.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, "");
        vm.expectRevert(LeadEscrow.BadSignature.selector);
        escrow.settle(AUCTION, BUYER, SELLER, USDC, abi.encodePacked(sig, uint8(0)));
        // The compact form of the real one pays.
        escrow.settle(AUCTION, BUYER, SELLER, USDC, compact(sig));
        check(escrow.settled(AUCTION), "compact signature pays");
    }

    function test_depositSmallerThanTheBidRefused() public {
        depositAs(BUYER, 5 * USDC);
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, 5 * USDC + 1);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.InsufficientBalance.selector, 5 * USDC, 5 * USDC + 1));
        escrow.settle(AUCTION, BUYER, SELLER, 5 * USDC + 1, sig);
        check(!escrow.settled(AUCTION) && balanceOf(BUYER) == 5 * USDC, "nothing moved");
        // Topped up, the same signature pays.
        depositAs(BUYER, 1);
        escrow.settle(AUCTION, BUYER, SELLER, 5 * USDC + 1, sig);
        check(balanceOf(BUYER) == 0, "paid");
    }

    /// The buyer asks for everything back right after winning; the settlement, submitted within
    /// the delay, still pays, and the withdrawal gets what is left.
    function test_withdrawalRacingASettlementLoses() public {
        depositAs(BUYER, 100 * USDC);
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, 30 * USDC);
        vm.prank(BUYER);
        escrow.requestWithdrawal(100 * USDC);
        vm.warp(block.timestamp + DELAY - 1);
        vm.prank(BUYER);
        vm.expectPartialRevert(LeadEscrow.WithdrawalLocked.selector);
        escrow.withdraw();
        escrow.settle(AUCTION, BUYER, SELLER, 30 * USDC, sig);
        vm.warp(block.timestamp + 1);
        uint256 before = usdc.balanceOf(BUYER);
        vm.prank(BUYER);
        escrow.withdraw();
        check(usdc.balanceOf(BUYER) == before + 70 * USDC, "the withdrawal gets only what is left");
        check(balanceOf(BUYER) == 0, "empty");
        check(usdc.balanceOf(address(escrow)) == 30 * USDC, "the seller's and the fee's money stays");
    }

    /// A settlement submitted after the buyer withdrew (its seller waited past the delay)
    /// fails and moves nothing; the delay is what the settlement window must fit in.
    function test_settlementAfterTheDelayCanFindTheMoneyGone() public {
        depositAs(BUYER, 100 * USDC);
        bytes memory sig = signed(ENCLAVE_KEY, AUCTION, BUYER, SELLER, 30 * USDC);
        vm.prank(BUYER);
        escrow.requestWithdrawal(100 * USDC);
        vm.warp(block.timestamp + DELAY);
        vm.prank(BUYER);
        escrow.withdraw();
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.InsufficientBalance.selector, 0, 30 * USDC));
        escrow.settle(AUCTION, BUYER, SELLER, 30 * USDC, sig);
        check(!escrow.settled(AUCTION), "unpaid, still settleable if topped up");
    }

    // ---- fuzz ----

    function testFuzz_settlementSplitsThePriceExactly(uint64 price, uint16 feeBps, bool otherSeller) public {
        feeBps = uint16(bound(feeBps, 0, 10_000));
        address to = feeBps == 0 ? address(0) : FEE_TO;
        LeadEscrow e = new LeadEscrow(IERC20(address(usdc)), IEnclaveKeySource(address(anchor)), feeBps, to, DELAY);
        usdc.mint(BUYER, price);
        vm.startPrank(BUYER);
        usdc.approve(address(e), type(uint256).max);
        if (price != 0) e.deposit(price);
        vm.stopPrank();
        address seller = otherSeller ? OTHER_SELLER : SELLER;
        e.settle(AUCTION, BUYER, seller, price, sign(ENCLAVE_KEY, e.settlementDigest(AUCTION, BUYER, seller, price)));
        uint256 fee = uint256(price) * feeBps / 10_000;
        check(e.earnings(seller) + e.earnings(to) == price || (to == address(0) && e.earnings(seller) == price), "split");
        check(e.earnings(seller) == price - fee, "seller share");
        (uint256 balance,,) = e.accountOf(BUYER);
        check(balance == 0, "buyer paid exactly the price");
    }

    function testFuzz_onlyTheEnclaveKeySettles(uint256 key, uint64 price) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        vm.assume(key != ENCLAVE_KEY);
        depositAs(BUYER, 1_000 * USDC);
        price = uint64(bound(price, 0, 1_000 * USDC));
        bytes memory sig = signed(key, AUCTION, BUYER, SELLER, price);
        vm.expectRevert(abi.encodeWithSelector(LeadEscrow.UnregisteredSigner.selector, vm.addr(key)));
        escrow.settle(AUCTION, BUYER, SELLER, price, sig);
    }

    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }

    // ---- gas ----

    event log_named_uint(string key, uint256 val);

    /// Whole-transaction gas (run with `--isolate`, as `scripts/contracts gas` does) of deposits,
    /// settlements (the deployment's first, which also fills the fee recipient's slot; a
    /// seller's first sale; a seller already credited; a seller who has claimed everything),
    /// a withdrawal request, a withdrawal and a claim, all with the compact signature.
    function test_gasOfSettlementAndDeposits() public {
        vm.prank(BUYER);
        escrow.deposit(100 * USDC);
        emit log_named_uint("deposit (first)", vm.snapshotGasLastCall("escrow", "deposit-first"));
        vm.prank(BUYER);
        escrow.deposit(100 * USDC);
        emit log_named_uint("deposit (topping up)", vm.snapshotGasLastCall("escrow", "deposit-again"));
        settleFor(1, OTHER_SELLER);
        emit log_named_uint("settle (the deployment's first)", vm.snapshotGasLastCall("escrow", "settle-0"));
        settleFor(2, SELLER);
        emit log_named_uint("settle (a seller's first sale)", vm.snapshotGasLastCall("escrow", "settle-1"));
        settleFor(3, SELLER);
        emit log_named_uint("settle (a seller already credited)", vm.snapshotGasLastCall("escrow", "settle-2"));
        vm.prank(SELLER);
        escrow.claim();
        emit log_named_uint("claim", vm.snapshotGasLastCall("escrow", "claim"));
        settleFor(4, SELLER);
        emit log_named_uint("settle (a seller who claimed)", vm.snapshotGasLastCall("escrow", "settle-3"));
        vm.prank(BUYER);
        escrow.requestWithdrawal(10 * USDC);
        emit log_named_uint("requestWithdrawal", vm.snapshotGasLastCall("escrow", "request"));
        vm.warp(block.timestamp + DELAY);
        vm.prank(BUYER);
        escrow.withdraw();
        emit log_named_uint("withdraw", vm.snapshotGasLastCall("escrow", "withdraw"));
    }

    function settleFor(uint256 n, address seller) internal {
        bytes16 id = bytes16(keccak256(abi.encode(n)));
        uint256 price = 12_345_678 + n;
        bytes memory sig = compact(signed(ENCLAVE_KEY, id, BUYER, seller, price));
        escrow.settle(id, BUYER, seller, price, sig);
    }
}

/// Drives the escrow with random deposits, withdrawal requests, withdrawals, settlements
/// (each auction signed once, submitted any number of times) and claims, and keeps the
/// totals the invariants compare with the contract's state.
contract EscrowHandler is CheatCodes {
    uint256 constant ENCLAVE_KEY = 0xe1;
    LeadEscrow public immutable escrow;
    TestUsdc public immutable usdc;
    address[3] public buyers = [address(0xb1), address(0xb2), address(0xb3)];
    address[3] public sellers = [address(0x51), address(0x52), address(0x53)];
    address public immutable feeTo;

    uint256 public deposited;
    uint256 public withdrawn;
    uint256 public settledTotal;
    uint256 public claimed;
    uint256 public paidTwice;
    bytes16[] public auctions;
    mapping(bytes16 => bytes) sigOf;
    mapping(bytes16 => address) buyerOf;
    mapping(bytes16 => address) sellerOf;
    mapping(bytes16 => uint256) priceOf;
    mapping(bytes16 => uint256) timesPaid;

    /// Deploys the token (so that it may mint) and the escrow it drives.
    constructor(IEnclaveKeySource anchor) {
        usdc = new TestUsdc();
        escrow = new LeadEscrow(IERC20(address(usdc)), anchor, 175, address(0xfee), 2 days);
        feeTo = escrow.feeRecipient();
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(buyers[i]);
            usdc.approve(address(escrow), type(uint256).max);
        }
    }

    function allAccounts() external view returns (address[] memory out) {
        out = new address[](7);
        for (uint256 i = 0; i < 3; i++) {
            out[i] = buyers[i];
            out[3 + i] = sellers[i];
        }
        out[6] = feeTo;
    }

    function deposit(uint8 who, uint32 amount) external {
        address b = buyers[who % 3];
        amount = uint32(1 + amount % 1e9);
        usdc.mint(b, amount);
        vm.prank(b);
        escrow.deposit(amount);
        deposited += amount;
    }

    function requestWithdrawal(uint8 who, uint32 amount) external {
        address b = buyers[who % 3];
        (uint256 balance,,) = escrow.accountOf(b);
        vm.prank(b);
        escrow.requestWithdrawal(balance == 0 ? 0 : amount % (balance + 1));
    }

    function withdraw(uint8 who, uint32 wait) external {
        address b = buyers[who % 3];
        vm.warp(block.timestamp + wait % 3 days);
        uint256 before = usdc.balanceOf(b);
        vm.prank(b);
        try escrow.withdraw() {
            withdrawn += usdc.balanceOf(b) - before;
        } catch {}
    }

    /// A new auction: the enclave signs its settlement; it is submitted at once or later.
    function sell(uint8 who, uint8 to, uint32 price, bool submit) external {
        bytes16 id = bytes16(keccak256(abi.encode(auctions.length, "auction")));
        auctions.push(id);
        buyerOf[id] = buyers[who % 3];
        sellerOf[id] = sellers[to % 3];
        priceOf[id] = price % 1e9;
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(ENCLAVE_KEY, escrow.settlementDigest(id, buyerOf[id], sellerOf[id], priceOf[id]));
        sigOf[id] = abi.encodePacked(r, s, v);
        if (submit) resubmit(uint16(auctions.length - 1));
    }

    /// Submits an earlier auction's settlement again (it may pay now if it could not before,
    /// never a second time).
    function resubmit(uint16 pick) public {
        if (auctions.length == 0) return;
        bytes16 id = auctions[pick % auctions.length];
        try escrow.settle(id, buyerOf[id], sellerOf[id], priceOf[id], sigOf[id]) {
            settledTotal += priceOf[id];
            if (++timesPaid[id] > 1) paidTwice++;
        } catch {}
    }

    function claim(uint8 who) external {
        address a = who % 4 == 3 ? feeTo : sellers[who % 4];
        uint256 before = usdc.balanceOf(a);
        vm.prank(a);
        try escrow.claim() {
            claimed += usdc.balanceOf(a) - before;
        } catch {}
    }
}

contract LeadEscrowInvariants is CheatCodes {
    LeadEscrow escrow;
    TestUsdc usdc;
    EscrowHandler handler;

    function setUp() public {
        vm.warp(1_800_000_000);
        CheckpointAnchor anchor = new CheckpointAnchor("leadgate.dev/log");
        anchor.registerEnclaveKey(vm.addr(0xe1), keccak256("attestation"), new bytes(48));
        handler = new EscrowHandler(IEnclaveKeySource(address(anchor)));
        escrow = handler.escrow();
        usdc = handler.usdc();
    }

    /// Forge fuzzes the calls of these contracts only (the forge-std `targetContracts` hook).
    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    function sums() internal view returns (uint256 balances, uint256 earned) {
        address[] memory all = handler.allAccounts();
        for (uint256 i = 0; i < all.length; i++) {
            (uint256 b,,) = escrow.accountOf(all[i]);
            balances += b;
            earned += escrow.earnings(all[i]);
        }
    }

    /// Tokens held = the buyers' balances + the earnings not yet claimed.
    function invariant_tokensHeldEqualBalancesPlusEarnings() public view {
        (uint256 balances, uint256 earned) = sums();
        require(usdc.balanceOf(address(escrow)) == balances + earned, "held != balances + earnings");
    }

    /// Everything deposited is in a balance, was withdrawn, or paid a settlement; everything
    /// settled is earnings or was claimed (the fee included).
    function invariant_moneyIsConserved() public view {
        (uint256 balances, uint256 earned) = sums();
        require(handler.deposited() == balances + handler.withdrawn() + handler.settledTotal(), "deposits");
        require(handler.settledTotal() == earned + handler.claimed(), "settlements");
    }

    /// No auction pays twice.
    function invariant_noAuctionPaysTwice() public view {
        require(handler.paidTwice() == 0, "an auction paid twice");
    }
}

/// Settlements signed by the Rust implementation (`verifier/tests/settlement_vectors.rs`,
/// `test/vectors/settlement.json`), paid through real escrows: the digest, both signature
/// forms and the fee split must agree with what the enclave signs.
contract LeadEscrowVectors is CheatCodes {
    address constant FEE_TO = address(bytes20(hex"fefefefefefefefefefefefefefefefefefefefe"));

    string vectors;
    CheckpointAnchor anchor;
    TestUsdc usdc;
    LeadEscrow[2] escrows;

    function setUp() public {
        vectors = vm.readFile("test/vectors/settlement.json");
        // The deployment order fixes the addresses the vectors were signed for (nonces 1–4).
        anchor = new CheckpointAnchor("leadgate.dev/log");
        usdc = new TestUsdc();
        IEnclaveKeySource keys = IEnclaveKeySource(address(anchor));
        escrows[0] = new LeadEscrow(IERC20(address(usdc)), keys, 250, FEE_TO, 2 days);
        escrows[1] = new LeadEscrow(IERC20(address(usdc)), keys, 0, address(0), 2 days);
        anchor.registerEnclaveKey(vm.parseJsonAddress(vectors, ".signer"), keccak256("attestation"), new bytes(48));
    }

    function at(uint256 e, uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".escrows[", itoa(e), "].settlements[", itoa(i), "].", field);
    }

    function itoa(uint256 v) internal pure returns (string memory) {
        return v == 0 ? "0" : string(abi.encodePacked(bytes1(uint8(48 + v))));
    }

    function test_rust_signed_settlements_pay_once_with_the_signed_split() public {
        require(vm.parseJsonUint(vectors, ".chainId") == block.chainid, "chain id");
        for (uint256 e = 0; e < 2; e++) {
            LeadEscrow escrow = escrows[e];
            string memory p = string.concat(".escrows[", itoa(e), "]");
            require(vm.parseJsonAddress(vectors, string.concat(p, ".escrow")) == address(escrow), "escrow address");
            require(vm.parseJsonUint(vectors, string.concat(p, ".feeBps")) == escrow.feeBps(), "fee bps");
            require(
                vm.parseJsonAddress(vectors, string.concat(p, ".feeRecipient")) == escrow.feeRecipient(), "fee recipient"
            );
            require(
                vm.parseJsonBytes32(vectors, string.concat(p, ".domainSeparator")) == escrow.domainSeparator(),
                "domain separator"
            );
            for (uint256 i = 0; i < 4; i++) {
                bytes16 id = bytes16(vm.parseJsonBytes(vectors, at(e, i, "auctionId")));
                address buyer = vm.parseJsonAddress(vectors, at(e, i, "buyer"));
                address seller = vm.parseJsonAddress(vectors, at(e, i, "seller"));
                uint256 price = vm.parseJsonUint(vectors, at(e, i, "price"));
                uint256 fee = vm.parseJsonUint(vectors, at(e, i, "fee"));
                require(
                    escrow.settlementDigest(id, buyer, seller, price)
                        == vm.parseJsonBytes32(vectors, at(e, i, "digest")),
                    "digest"
                );
                usdc.mint(buyer, price);
                vm.startPrank(buyer);
                usdc.approve(address(escrow), price);
                escrow.deposit(price);
                vm.stopPrank();
                // Odd cases are sent in the 64-byte compact form, even ones as 65 bytes.
                bytes memory sig = vm.parseJsonBytes(vectors, at(e, i, i % 2 == 0 ? "signature" : "compactSignature"));
                uint256 before = escrow.earnings(seller);
                escrow.settle(id, buyer, seller, price, sig);
                require(escrow.settled(id), "settled");
                require(escrow.earnings(seller) - before == price - fee, "seller's share");
                (uint256 balance,,) = escrow.accountOf(buyer);
                require(balance == 0, "buyer charged the price");
                vm.expectRevert(abi.encodeWithSelector(LeadEscrow.AlreadySettled.selector, id));
                escrow.settle(id, buyer, seller, price, sig);
            }
        }
        require(escrows[0].earnings(FEE_TO) > 0, "fee credited");
    }
}
