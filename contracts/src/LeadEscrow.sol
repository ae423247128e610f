// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// The ERC-20 calls the escrow makes (EIP-20). USDC returns `true`; tokens that return nothing
/// are accepted too, tokens that return `false` or revert fail the call.
interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function balanceOf(address account) external view returns (uint256);
}

/// The one call the escrow makes to the anchoring contract: the enclave key now in force.
interface IEnclaveKeySource {
    function enclaveKey() external view returns (address);
}

/// @title LeadEscrow
/// @notice Buyers' deposits of the settlement token (USDC, 6 decimals) and the payment of every
/// auction a leadgate enclave closed, exactly once, on the enclave's signature.
///
/// Deposits. A buyer deposits with `deposit` and takes money out in two steps:
/// `requestWithdrawal(amount)` starts a delay of `withdrawalDelay` seconds, after which
/// `withdraw` pays min(amount, balance). The delay is set at deployment, longer than an auction
/// plus its settlement window, so the money that backs a bid is still here when its
/// settlement arrives; the enclave counts a requested amount as gone the moment it sees the
/// request, and accepts a bid only if balance − requested − the buyer's other open commitments
/// covers it (`docs/settlement.md`).
///
/// Settlement. At close the enclave signs EIP-712 typed data
/// `Settlement(bytes16 auctionId,address buyer,address seller,uint256 price,uint16 feeBps,address feeRecipient)`
/// under the domain (name "leadgate LeadEscrow", version "1", chain id, this contract) with
/// its anchor key: the secp256k1 key the `CheckpointAnchor` contract `anchor` names as active.
/// So a key rotated away from or revoked there stops counting here too, at once. Anyone may
/// submit a settlement (`settle`); it moves `price` from the buyer's balance, credits the seller
/// `price − fee` and the fee recipient `fee = price × feeBps / 10,000` (rounded down), and
/// marks the auction settled, so it pays once. The fee is fixed at deployment (zero by
/// default) and is part of what the enclave signs: a settlement signed for other fee terms
/// does not verify.
///
/// Earnings are credited, and sellers and the fee recipient take them with `claim` (pull
/// payment): a settlement then never depends on a transfer to the seller, which a token's
/// blocklist (USDC has one) could make revert, and it costs one storage write instead of a
/// token call.
///
/// Amounts are in the token's smallest unit (USDC: 10^-6); balances fit 96 bits.
contract LeadEscrow {
    /// EIP-712 domain type hash.
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// EIP-712 type hash of the signed settlement.
    bytes32 public constant SETTLEMENT_TYPEHASH = keccak256(
        "Settlement(bytes16 auctionId,address buyer,address seller,uint256 price,uint16 feeBps,address feeRecipient)"
    );
    bytes32 private constant NAME_HASH = keccak256("leadgate LeadEscrow");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// secp256k1n / 2: signatures with a larger `s` are malleable copies (EIP-2) and refused.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    /// Basis points in a whole.
    uint256 private constant BPS = 10_000;

    /// The settlement token (USDC on a real chain; a test token on anvil).
    IERC20 public immutable token;
    /// The `CheckpointAnchor` whose active enclave key signs settlements.
    IEnclaveKeySource public immutable anchor;
    /// The platform fee, in basis points of the price (0 to 10,000).
    uint16 public immutable feeBps;
    /// Who is credited the fee; the zero address when `feeBps` is 0.
    address public immutable feeRecipient;
    /// Seconds between `requestWithdrawal` and the earliest `withdraw`.
    uint64 public immutable withdrawalDelay;
    bytes32 private immutable cachedDomainSeparator;
    uint256 private immutable cachedChainId;

    /// A buyer's deposit, one storage slot: the balance, the amount of its pending withdrawal
    /// request and when that request may be withdrawn (Unix seconds; 0 with no request).
    struct Account {
        uint96 balance;
        uint96 requested;
        uint64 unlockAt;
    }

    mapping(address buyer => Account) private accounts;
    /// Settled but not yet claimed, per seller (and the fee recipient), read with `earnings`:
    /// the amount, with bit 255 (`CREDITED`) set once an account has been credited, so that a
    /// claim leaves the slot nonzero and the seller's next settlement rewrites a slot (5,000
    /// gas) instead of filling an empty one (22,100).
    mapping(address account => uint256) private credit;
    uint256 private constant CREDITED = 1 << 255;
    /// Whether the auction (the lead id, 16 bytes) has been paid.
    mapping(bytes16 auctionId => bool) public settled;

    event Deposited(address indexed buyer, uint256 amount, uint256 balance);
    /// `amount` 0 cancels a request.
    event WithdrawalRequested(address indexed buyer, uint256 amount, uint64 unlockAt);
    event Withdrawn(address indexed buyer, uint256 amount, uint256 balance);
    /// One per auction: the sale price and the fee taken from it are public in the log already.
    event Settled(bytes16 indexed auctionId, address indexed buyer, address indexed seller, uint256 price, uint256 fee);
    event Claimed(address indexed account, uint256 amount);

    error ZeroAddress();
    error BadFee(uint256 feeBps, address feeRecipient);
    error ZeroDelay();
    error ZeroAmount();
    error AmountTooLarge(uint256 amount);
    error InsufficientBalance(uint256 balance, uint256 amount);
    error NoWithdrawalRequested();
    error WithdrawalLocked(uint64 unlockAt);
    error BadSignature();
    error UnregisteredSigner(address signer);
    error AlreadySettled(bytes16 auctionId);
    error NothingToClaim();
    error TokenCallFailed();

    /// @param token_ the settlement token
    /// @param anchor_ the `CheckpointAnchor` of the log whose enclave settles
    /// @param feeBps_ the platform fee in basis points, at most 10,000; 0 for none
    /// @param feeRecipient_ who is credited the fee; must be the zero address iff feeBps_ is 0
    /// @param withdrawalDelay_ seconds a withdrawal waits: longer than an auction plus its
    ///        settlement window
    constructor(
        IERC20 token_,
        IEnclaveKeySource anchor_,
        uint16 feeBps_,
        address feeRecipient_,
        uint64 withdrawalDelay_
    ) {
        if (address(token_) == address(0) || address(anchor_) == address(0)) revert ZeroAddress();
        if (feeBps_ > BPS || (feeBps_ == 0) != (feeRecipient_ == address(0))) {
            revert BadFee(feeBps_, feeRecipient_);
        }
        if (withdrawalDelay_ == 0) revert ZeroDelay();
        token = token_;
        anchor = anchor_;
        feeBps = feeBps_;
        feeRecipient = feeRecipient_;
        withdrawalDelay = withdrawalDelay_;
        cachedChainId = block.chainid;
        cachedDomainSeparator = _domainSeparator();
    }

    // ---- buyers ----

    /// Deposits `amount` of the token (approved to this contract beforehand) to the caller's
    /// balance.
    function deposit(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Account storage a = accounts[msg.sender];
        uint256 balance = uint256(a.balance) + amount;
        if (balance > type(uint96).max) revert AmountTooLarge(amount);
        a.balance = uint96(balance);
        _call(abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)));
        emit Deposited(msg.sender, amount, balance);
    }

    /// Asks to withdraw `amount` after `withdrawalDelay` seconds, replacing any earlier request
    /// (and restarting the delay); 0 cancels. The enclave stops counting `amount` as
    /// available at once.
    function requestWithdrawal(uint256 amount) external {
        Account storage a = accounts[msg.sender];
        if (amount > a.balance) revert InsufficientBalance(a.balance, amount);
        uint64 unlockAt = amount == 0 ? 0 : uint64(block.timestamp) + withdrawalDelay;
        a.requested = uint96(amount);
        a.unlockAt = unlockAt;
        emit WithdrawalRequested(msg.sender, amount, unlockAt);
    }

    /// Pays out the caller's pending request once its delay has passed: min(requested,
    /// balance), since settlements made in the meantime came first.
    function withdraw() external {
        Account memory a = accounts[msg.sender];
        if (a.requested == 0) revert NoWithdrawalRequested();
        if (block.timestamp < a.unlockAt) revert WithdrawalLocked(a.unlockAt);
        uint96 amount = a.requested < a.balance ? a.requested : a.balance;
        uint96 balance = a.balance - amount;
        accounts[msg.sender] = Account(balance, 0, 0);
        if (amount != 0) _call(abi.encodeCall(IERC20.transfer, (msg.sender, amount)));
        emit Withdrawn(msg.sender, amount, balance);
    }

    /// A buyer's deposit: balance, pending withdrawal request and its unlock time (Unix
    /// seconds, 0 with none). What the enclave may count on is `balance − requested`.
    function accountOf(address buyer) external view returns (uint256 balance, uint256 requested, uint64 unlockAt) {
        Account memory a = accounts[buyer];
        return (a.balance, a.requested, a.unlockAt);
    }

    // ---- settlement ----

    /// Pays auction `auctionId`: `price` from `buyer`'s balance, `price − fee` to `seller`'s
    /// earnings and `fee` to the fee recipient's.
    /// @param signature the enclave's, by the anchor's active key, over
    ///        `settlementDigest(auctionId, buyer, seller, price)`: 65 bytes r ‖ s ‖ v (v = 27 or
    ///        28, low s), or its 64-byte EIP-2098 compact form r ‖ vs
    function settle(bytes16 auctionId, address buyer, address seller, uint256 price, bytes calldata signature)
        external
    {
        address signer = _recover(settlementDigest(auctionId, buyer, seller, price), signature);
        if (signer == address(0)) revert BadSignature();
        if (signer != anchor.enclaveKey()) revert UnregisteredSigner(signer);
        if (settled[auctionId]) revert AlreadySettled(auctionId);
        Account storage a = accounts[buyer];
        uint96 balance = a.balance;
        if (price > balance) revert InsufficientBalance(balance, price);
        settled[auctionId] = true;
        a.balance = balance - uint96(price);
        uint256 fee = price * feeBps / BPS;
        // Amounts are below 2^96, so a sum never reaches the CREDITED bit.
        credit[seller] = (credit[seller] + (price - fee)) | CREDITED;
        if (fee != 0) credit[feeRecipient] = (credit[feeRecipient] + fee) | CREDITED;
        emit Settled(auctionId, buyer, seller, price, fee);
    }

    /// Settled and not yet claimed by `account` (a seller or the fee recipient), token units.
    function earnings(address account) public view returns (uint256) {
        return credit[account] & ~CREDITED;
    }

    /// Pays the caller its earnings.
    function claim() external {
        uint256 amount = earnings(msg.sender);
        if (amount == 0) revert NothingToClaim();
        credit[msg.sender] = CREDITED;
        _call(abi.encodeCall(IERC20.transfer, (msg.sender, amount)));
        emit Claimed(msg.sender, amount);
    }

    /// The EIP-712 domain separator for this chain and contract.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _domainSeparator();
    }

    function _domainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// The EIP-712 digest the enclave signs, 32 bytes: keccak256("\x19\x01" ‖ domainSeparator() ‖
    /// keccak256(abi.encode(SETTLEMENT_TYPEHASH, auctionId, buyer, seller, price, feeBps,
    /// feeRecipient))), with this deployment's fee terms.
    function settlementDigest(bytes16 auctionId, address buyer, address seller, uint256 price)
        public
        view
        returns (bytes32)
    {
        bytes32 structHash =
            keccak256(abi.encode(SETTLEMENT_TYPEHASH, auctionId, buyer, seller, price, feeBps, feeRecipient));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    /// A token call that must succeed: no revert, and `true` or nothing returned.
    function _call(bytes memory data) private {
        (bool ok, bytes memory ret) = address(token).call(data);
        if (!ok || (ret.length != 0 && (ret.length != 32 || abi.decode(ret, (uint256)) != 1))) {
            revert TokenCallFailed();
        }
        if (ret.length == 0 && address(token).code.length == 0) revert TokenCallFailed();
    }

    /// ecrecover with the checks it lacks (as `CheckpointAnchor._recover`): 65-byte r ‖ s ‖ v or
    /// 64-byte EIP-2098 r ‖ vs; v 27 or 28, s low (EIP-2). The zero address for anything else.
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
