//! The validation rule tables: each invalid block and transaction is rejected
//! with the expected typed reason, and each valid counterpart is accepted.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use super::*;
use crate::hash::{Hash256, PubkeyHash};
use crate::keys::PrivateKey;
use crate::merkle::block_merkle_root;
use crate::params::Network;
use crate::sighash::{sign_all, sign_input};
use crate::transaction::{COINBASE_MESSAGE_LEN, TxIn};

/// Checks that a rejection is the expected one.
type BlockCheck = Box<dyn Fn(&BlockError) -> bool>;
type TxCheck = Box<dyn Fn(&TxError) -> bool>;

const HEIGHT: u32 = 201;
const MTP: u32 = 1_700_000_000;
const NOW: u32 = 1_700_000_500;

fn one_thread() -> NonZeroUsize {
    NonZeroUsize::MIN
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes(&[seed; 32]).expect("a small repeated byte is a valid scalar")
}

fn coins(n: u64) -> Amount {
    Amount::from_coins(n).expect("small amounts fit")
}

/// A parent chain at height 200 with a few coins, in regtest.
struct Fixture {
    params: Params,
    view: HashMap<OutPoint, Coin>,
    alice: PrivateKey,
    /// A mature coinbase output of 50 coins to alice.
    mature: OutPoint,
    /// A regular output of 10 coins to alice.
    regular: OutPoint,
    /// A coinbase output to alice, one block deep (immature).
    immature: OutPoint,
}

fn outpoint(tag: u8) -> OutPoint {
    OutPoint { txid: Txid::from_byte_array([tag; 32]), vout: 0 }
}

impl Fixture {
    fn new() -> Fixture {
        let alice = key(1);
        let alice_hash = alice.public_key().pubkey_hash();
        let mut view = HashMap::new();
        let (mature, regular, immature) = (outpoint(1), outpoint(2), outpoint(3));
        let coin = |value, height, is_coinbase| Coin {
            output: TxOut { value, pubkey_hash: alice_hash },
            height,
            is_coinbase,
        };
        view.insert(mature, coin(coins(50), 1, true));
        view.insert(regular, coin(coins(10), 150, false));
        view.insert(immature, coin(coins(50), HEIGHT - 1, true));
        Fixture { params: Params::new(Network::Regtest), view, alice, mature, regular, immature }
    }

    fn ctx(&self) -> BlockContext {
        BlockContext {
            prev_blockhash: BlockHash::from_byte_array([0xaa; 32]),
            height: HEIGHT,
            median_time_past: MTP,
            required_bits: self.params.pow_limit.to_compact(),
            now: NOW,
        }
    }

    /// A signed transaction spending `from` (coins of alice) into `outputs`.
    fn spend(&self, from: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Transaction {
        let mut tx = Transaction::spending(from.iter().map(|(op, _)| *op), outputs);
        let spent: Vec<TxOut> = from.iter().map(|(_, out)| *out).collect();
        sign_all(&mut tx, &spent, &self.alice).expect("alice owns the fixture coins");
        tx
    }

    fn coin_out(&self, outpoint: OutPoint) -> (OutPoint, TxOut) {
        (outpoint, self.view[&outpoint].output)
    }

    fn to_bob(&self, value: Amount) -> TxOut {
        TxOut { value, pubkey_hash: key(2).public_key().pubkey_hash() }
    }

    /// Pays `value` of the regular coin to bob, the rest is fee.
    fn pay_bob(&self, value: Amount) -> Transaction {
        self.spend(&[self.coin_out(self.regular)], vec![self.to_bob(value)])
    }

    /// A block at HEIGHT with a coinbase paying subsidy + `fees`, then `txs`, mined.
    fn block(&self, txs: Vec<Transaction>, fees: Amount) -> Block {
        let reward = block_subsidy(HEIGHT, &self.params).checked_add(fees).expect("small");
        let coinbase = Transaction::coinbase(
            HEIGHT,
            7,
            &[0; COINBASE_MESSAGE_LEN],
            vec![TxOut { value: reward, pubkey_hash: PubkeyHash::default() }],
        );
        let mut txdata = vec![coinbase];
        txdata.extend(txs);
        self.assemble(txdata)
    }

    fn assemble(&self, txdata: Vec<Transaction>) -> Block {
        let header = BlockHeader {
            version: 1,
            prev_blockhash: self.ctx().prev_blockhash,
            merkle_root: block_merkle_root(&txdata).root,
            time: MTP + 1,
            bits: self.params.pow_limit.to_compact(),
            nonce: 0,
        };
        let mut block = Block { header, txdata };
        self.mine(&mut block);
        block
    }

    fn mine(&self, block: &mut Block) {
        let target = block.header.bits.to_target().expect("test bits decode");
        block.header.nonce = (0..=u32::MAX)
            .find(|&n| {
                let mut h = block.header;
                h.nonce = n;
                target.is_met_by(h.block_hash())
            })
            .expect("regtest targets are met quickly");
    }

    /// Recomputes the merkle root and proof of work after a test changed the block.
    fn reseal(&self, block: &mut Block) {
        block.header.merkle_root = block_merkle_root(&block.txdata).root;
        self.mine(block);
    }

    fn validate(&self, block: &Block) -> Result<BlockSpends, BlockError> {
        validate_block(block, &self.ctx(), &self.view, &self.params, one_thread())
    }
}

#[test]
fn a_valid_block_with_a_chain_of_spends_connects() {
    let f = Fixture::new();
    let t1 = f.pay_bob(coins(9));
    let t1_out = (OutPoint { txid: t1.txid(), vout: 0 }, t1.outputs[0]);
    // Bob spends t1's output in the same block: allowed because t1 comes first.
    let bob = key(2);
    let mut t2 = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prev_out: t1_out.0,
            signature: [0; 64],
            pubkey: [0; 33],
            sequence: SEQUENCE_FINAL,
        }],
        outputs: vec![f.to_bob(coins(8))],
        locktime: 0,
    };
    sign_input(&mut t2, 0, &t1_out.1, &bob).expect("bob owns t1's output");
    let block = f.block(vec![t1, t2.clone()], coins(2));
    let spends = f.validate(&block).expect("valid block");
    assert_eq!(spends.fees, coins(2));
    assert_eq!(spends.spent, vec![(f.regular, f.view[&f.regular])]);
    // The coinbase output and t2's output remain; t1's was spent inside the block.
    assert_eq!(spends.created.len(), 2);
    assert_eq!(spends.created[1].0, OutPoint { txid: t2.txid(), vout: 0 });
    assert!(spends.created[0].1.is_coinbase);
    // The same result on several threads.
    let parallel =
        validate_block(&block, &f.ctx(), &f.view, &f.params, NonZeroUsize::new(4).expect("4 > 0"));
    assert_eq!(parallel, Ok(spends));
}

#[test]
fn a_coinbase_may_claim_exactly_subsidy_plus_fees() {
    let f = Fixture::new();
    let block = f.block(vec![f.pay_bob(coins(7))], coins(3));
    assert!(f.validate(&block).is_ok());
}

#[test]
fn invalid_blocks_are_rejected_with_the_expected_reason() {
    let f = Fixture::new();
    let ctx = f.ctx();
    let good = || f.block(vec![f.pay_bob(coins(9))], coins(1));
    let mut cases: Vec<(&str, Block, BlockCheck)> = Vec::new();
    let mut add = |name: &'static str, block: Block, check: Box<dyn Fn(&BlockError) -> bool>| {
        cases.push((name, block, check));
    };

    let mut b = good();
    let target = b.header.bits.to_target().expect("decodes");
    while target.is_met_by(b.block_hash()) {
        b.header.nonce = b.header.nonce.wrapping_add(1);
    }
    add(
        "hash above target",
        b,
        Box::new(|e| matches!(e, BlockError::ProofOfWork(PowError::HashAboveTarget { .. }))),
    );

    let mut b = good();
    b.header.bits = CompactTarget::from_consensus(0x0480_0001);
    add(
        "negative bits",
        b,
        Box::new(|e| matches!(e, BlockError::ProofOfWork(PowError::Negative { .. }))),
    );

    let mut b = good();
    b.header.bits = CompactTarget::from_consensus(0xff12_3456);
    add(
        "overflowing bits",
        b,
        Box::new(|e| matches!(e, BlockError::ProofOfWork(PowError::Overflow { .. }))),
    );

    let mut b = good();
    b.header.bits = CompactTarget::from_consensus(0x2100_ffff);
    f.mine(&mut b);
    add(
        "target above the pow limit",
        b,
        Box::new(|e| matches!(e, BlockError::ProofOfWork(PowError::AboveLimit { .. }))),
    );

    let mut b = good();
    b.header.bits = CompactTarget::from_consensus(0x200f_ffff);
    f.mine(&mut b);
    add(
        "bits not the required ones",
        b,
        Box::new(|e| matches!(e, BlockError::BadDifficultyBits { .. })),
    );

    let mut b = good();
    b.header.time = MTP;
    f.mine(&mut b);
    add(
        "time equal to median time past",
        b,
        Box::new(|e| matches!(e, BlockError::TimeTooOld { .. })),
    );

    let mut b = good();
    b.header.time = MTP - 100;
    f.mine(&mut b);
    add(
        "time before median time past",
        b,
        Box::new(|e| matches!(e, BlockError::TimeTooOld { .. })),
    );

    let mut b = good();
    b.header.time = NOW + f.params.max_future_block_time + 1;
    f.mine(&mut b);
    add(
        "time too far in the future",
        b,
        Box::new(|e| matches!(e, BlockError::TimeTooNew { .. }) && e.kind() == Kind::Premature),
    );

    let mut b = good();
    b.header.prev_blockhash = BlockHash::from_byte_array([0xbb; 32]);
    f.mine(&mut b);
    add("wrong parent", b, Box::new(|e| matches!(e, BlockError::WrongParent { .. })));

    add("no transactions", f.assemble(vec![]), Box::new(|e| *e == BlockError::NoTransactions));

    let b = f.assemble(vec![f.pay_bob(coins(9))]);
    add("first transaction not a coinbase", b, Box::new(|e| *e == BlockError::FirstNotCoinbase));

    let mut b = good();
    let second =
        Transaction::coinbase(HEIGHT, 8, &[0; COINBASE_MESSAGE_LEN], vec![f.to_bob(coins(1))]);
    b.txdata.push(second);
    f.reseal(&mut b);
    add("two coinbases", b, Box::new(|e| *e == BlockError::MultipleCoinbases(2)));

    let mut b = good();
    b.txdata[0] = Transaction::coinbase(
        HEIGHT + 1,
        0,
        &[0; COINBASE_MESSAGE_LEN],
        b.txdata[0].outputs.clone(),
    );
    f.reseal(&mut b);
    add(
        "coinbase commits to the wrong height",
        b,
        Box::new(
            |e| matches!(e, BlockError::BadCoinbaseHeight { expected: HEIGHT, got } if *got == HEIGHT + 1),
        ),
    );

    let mut b = good();
    b.txdata[0].outputs[0].value =
        b.txdata[0].outputs[0].value.checked_add(Amount::from_belushis(1)).expect("small");
    f.reseal(&mut b);
    add(
        "coinbase pays one belushi too much",
        b,
        Box::new(|e| matches!(e, BlockError::CoinbaseTooLarge { .. })),
    );

    let mut b = good();
    b.header.merkle_root = Hash256::from_byte_array([1; 32]);
    f.mine(&mut b);
    add("merkle root does not match", b, Box::new(|e| *e == BlockError::BadMerkleRoot));

    let t1 = f.pay_bob(coins(9));
    let t2 = f.spend(&[f.coin_out(f.mature)], vec![f.to_bob(coins(49))]);
    let mut b = f.block(vec![t1, t2.clone()], coins(2));
    b.txdata.push(t2);
    f.mine(&mut b); // Same merkle root as without the duplicate.
    add(
        "duplicated last transaction (CVE-2012-2459)",
        b,
        Box::new(|e| *e == BlockError::MutatedMerkleTree),
    );

    let t1 = f.pay_bob(coins(9));
    let t2 = f.spend(&[f.coin_out(f.mature)], vec![f.to_bob(coins(49))]);
    let mut b = f.block(vec![t1.clone(), t2], coins(2));
    b.txdata.push(t1.clone());
    f.reseal(&mut b);
    let dup = t1.txid();
    add(
        "duplicate txid elsewhere in the block",
        b,
        Box::new(move |e| *e == BlockError::DuplicateTxid(dup)),
    );

    let t1 = f.pay_bob(coins(9));
    let t2 = f.pay_bob(coins(8));
    let regular = f.regular;
    add(
        "two transactions spend one output",
        f.block(vec![t1, t2], coins(3)),
        Box::new(move |e| *e == BlockError::DoubleSpend { tx: 2, outpoint: regular }),
    );

    let t1 = f.pay_bob(coins(9));
    let t1_out = (OutPoint { txid: t1.txid(), vout: 0 }, t1.outputs[0]);
    let mut t2 = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prev_out: t1_out.0,
            signature: [0; 64],
            pubkey: [0; 33],
            sequence: SEQUENCE_FINAL,
        }],
        outputs: vec![f.to_bob(coins(8))],
        locktime: 0,
    };
    sign_input(&mut t2, 0, &t1_out.1, &key(2)).expect("bob owns it");
    add(
        "spends an output created later in the block",
        f.block(vec![t2, t1], coins(2)),
        Box::new(|e| {
            matches!(
                e,
                BlockError::Transaction { index: 1, error: TxError::MissingInput { .. }, .. }
            )
        }),
    );

    let ghost = (outpoint(9), f.to_bob(coins(1)));
    let mut t = f.pay_bob(coins(9));
    t.inputs[0].prev_out = ghost.0;
    add(
        "spends a missing output",
        f.block(vec![t], coins(1)),
        Box::new(|e| {
            matches!(e, BlockError::Transaction { error: TxError::MissingInput { .. }, .. })
                && e.kind() == Kind::Invalid
        }),
    );

    let t = f.spend(&[f.coin_out(f.immature)], vec![f.to_bob(coins(49))]);
    add(
        "spends an immature coinbase",
        f.block(vec![t], coins(1)),
        Box::new(|e| {
            matches!(
                e,
                BlockError::Transaction {
                    error: TxError::PrematureCoinbaseSpend { depth: 1, .. },
                    ..
                }
            ) && e.kind() == Kind::Invalid
        }),
    );

    let mut t = f.pay_bob(coins(9));
    t.inputs[0].signature[40] ^= 1;
    add(
        "bad signature",
        f.block(vec![t], coins(1)),
        Box::new(|e| {
            matches!(e, BlockError::Transaction { error: TxError::Signature { input: 0, .. }, .. })
        }),
    );

    let t = f.spend(&[f.coin_out(f.regular)], vec![f.to_bob(coins(9))]).with_locktime(HEIGHT, 0);
    add(
        "non-final transaction",
        f.block(vec![t], coins(1)),
        Box::new(|e| matches!(e, BlockError::Transaction { error: TxError::NonFinal { .. }, .. })),
    );

    let t = f.pay_bob(coins(11));
    add(
        "outputs above inputs",
        f.block(vec![t], Amount::ZERO),
        Box::new(|e| {
            matches!(e, BlockError::Transaction { error: TxError::InputsBelowOutputs { .. }, .. })
        }),
    );

    let t = f.pay_bob(Amount::from_belushis(Amount::MAX_MONEY.to_belushis() + 1));
    add(
        "output above MAX_MONEY",
        f.block(vec![t], Amount::ZERO),
        Box::new(|e| {
            matches!(
                e,
                BlockError::Transaction { error: TxError::OutputValueOutOfRange { .. }, .. }
            )
        }),
    );

    let mut t = f.pay_bob(coins(9));
    t.inputs.clear();
    add(
        "transaction without inputs",
        f.block(vec![t], Amount::ZERO),
        Box::new(|e| matches!(e, BlockError::Transaction { error: TxError::NoInputs, .. })),
    );

    let mut t = f.pay_bob(coins(9));
    t.inputs.push(t.inputs[0]);
    add(
        "transaction spends one output twice",
        f.block(vec![t], Amount::ZERO),
        Box::new(|e| {
            matches!(e, BlockError::Transaction { error: TxError::DuplicateInput(_), .. })
        }),
    );

    let mut t = f.pay_bob(coins(9));
    t.inputs.push(TxIn { prev_out: OutPoint::NULL, ..t.inputs[0] });
    add(
        "null outpoint outside the coinbase",
        f.block(vec![t], Amount::ZERO),
        Box::new(|e| matches!(e, BlockError::Transaction { error: TxError::NullPrevout(1), .. })),
    );

    let mut b = good();
    let huge = vec![f.to_bob(Amount::ZERO); 40_000];
    b.txdata[0].outputs.extend(huge);
    add("block above the size limit", b, Box::new(|e| matches!(e, BlockError::TooLarge { .. })));

    assert!(cases.len() >= 25, "the table has {} cases", cases.len());
    for (name, block, check) in &cases {
        let result = validate_block(block, &ctx, &f.view, &f.params, one_thread());
        match result {
            Err(ref e) if check(e) => {}
            other => panic!("{name}: unexpected result {other:?}"),
        }
    }
}

#[test]
fn an_output_may_not_overwrite_an_unspent_one() {
    let mut f = Fixture::new();
    let t = f.pay_bob(coins(9));
    let clash = OutPoint { txid: t.txid(), vout: 0 };
    f.view.insert(clash, f.view[&f.regular]);
    let err = f.validate(&f.block(vec![t], coins(1))).expect_err("BIP 30");
    assert_eq!(err, BlockError::OverwritesUnspentOutput { tx: 1, outpoint: clash });
}

#[test]
fn the_subsidy_halves() {
    let p = Params::new(Network::Main);
    assert_eq!(block_subsidy(0, &p), coins(50));
    assert_eq!(block_subsidy(209_999, &p), coins(50));
    assert_eq!(block_subsidy(210_000, &p), coins(25));
    assert_eq!(block_subsidy(420_000, &p), Amount::from_belushis(1_250_000_000));
    assert_eq!(block_subsidy(64 * 210_000, &p), Amount::ZERO);
}

// ---- Loose transactions (what a mempool checks) ----

fn loose(f: &Fixture, tx: &Transaction) -> Result<Amount, TxError> {
    check_loose_transaction(tx, &f.view, HEIGHT, MTP, &f.params)
}

#[test]
fn a_valid_transaction_pays_its_fee() {
    let f = Fixture::new();
    assert_eq!(loose(&f, &f.pay_bob(coins(9))), Ok(coins(1)));
    let both = f.spend(&[f.coin_out(f.mature), f.coin_out(f.regular)], vec![f.to_bob(coins(60))]);
    assert_eq!(loose(&f, &both), Ok(Amount::ZERO));
}

#[test]
fn locktime_is_final_once_reached() {
    let f = Fixture::new();
    let t =
        f.spend(&[f.coin_out(f.regular)], vec![f.to_bob(coins(9))]).with_locktime(HEIGHT - 1, 0);
    assert_eq!(loose(&f, &t), Ok(coins(1)));
    let t = f.spend(&[f.coin_out(f.regular)], vec![f.to_bob(coins(9))]).with_locktime(MTP - 1, 0);
    assert_eq!(loose(&f, &t), Ok(coins(1)));
    // A final sequence on every input disables the locktime.
    let t = f
        .spend(&[f.coin_out(f.regular)], vec![f.to_bob(coins(9))])
        .with_locktime(HEIGHT + 5, SEQUENCE_FINAL);
    assert_eq!(loose(&f, &t), Ok(coins(1)));
}

#[test]
fn invalid_transactions_are_rejected_with_the_expected_reason() {
    let mut f = Fixture::new();
    let rich = outpoint(7);
    let rich_hash = f.alice.public_key().pubkey_hash();
    f.view.insert(
        rich,
        Coin {
            output: TxOut { value: Amount::MAX_MONEY, pubkey_hash: rich_hash },
            height: 5,
            is_coinbase: false,
        },
    );
    let f = f;
    let mut cases: Vec<(&str, Transaction, TxCheck)> = Vec::new();
    let mut add = |name: &'static str, tx: Transaction, check: Box<dyn Fn(&TxError) -> bool>| {
        cases.push((name, tx, check))
    };

    let mut t = f.pay_bob(coins(9));
    t.inputs.clear();
    add("no inputs", t, Box::new(|e| *e == TxError::NoInputs));

    let mut t = f.pay_bob(coins(9));
    t.outputs.clear();
    add("no outputs", t, Box::new(|e| *e == TxError::NoOutputs));

    let t = f.spend(&[f.coin_out(f.regular)], vec![f.to_bob(Amount::ZERO); 40_000]);
    add("too large", t, Box::new(|e| matches!(e, TxError::TooLarge { .. })));

    let t = f.pay_bob(Amount::from_belushis(u64::MAX));
    add(
        "output value out of range",
        t,
        Box::new(|e| matches!(e, TxError::OutputValueOutOfRange { vout: 0, .. })),
    );

    let t = f.spend(
        &[f.coin_out(f.regular)],
        vec![f.to_bob(Amount::MAX_MONEY), f.to_bob(Amount::MAX_MONEY)],
    );
    add("outputs sum out of range", t, Box::new(|e| *e == TxError::OutputTotalOutOfRange));

    let mut t = f.pay_bob(coins(9));
    t.inputs.push(t.inputs[0]);
    add("duplicate input", t, Box::new(|e| matches!(e, TxError::DuplicateInput(_))));

    let mut t = f.pay_bob(coins(9));
    t.inputs.push(TxIn { prev_out: OutPoint::NULL, ..t.inputs[0] });
    add("null outpoint", t, Box::new(|e| *e == TxError::NullPrevout(1)));

    let t = Transaction::coinbase(HEIGHT, 0, &[0; COINBASE_MESSAGE_LEN], vec![f.to_bob(coins(1))]);
    add("coinbase outside a block", t, Box::new(|e| *e == TxError::UnexpectedCoinbase));

    let mut t = f.pay_bob(coins(9));
    t.inputs[0].prev_out = outpoint(9);
    add(
        "missing input",
        t,
        Box::new(|e| {
            matches!(e, TxError::MissingInput { input: 0, .. }) && e.kind() == Kind::Missing
        }),
    );

    let t = f.spend(&[f.coin_out(f.immature)], vec![f.to_bob(coins(1))]);
    add(
        "immature coinbase spend",
        t,
        Box::new(|e| {
            matches!(e, TxError::PrematureCoinbaseSpend { .. }) && e.kind() == Kind::Premature
        }),
    );

    let t = f.spend(&[f.coin_out(rich), f.coin_out(f.regular)], vec![f.to_bob(coins(1))]);
    add("inputs sum out of range", t, Box::new(|e| *e == TxError::InputTotalOutOfRange));

    let t = f.pay_bob(coins(10).checked_add(Amount::from_belushis(1)).expect("small"));
    add(
        "outputs above inputs by one belushi",
        t,
        Box::new(|e| matches!(e, TxError::InputsBelowOutputs { .. })),
    );

    let t = f.spend(&[f.coin_out(f.regular)], vec![f.to_bob(coins(9))]).with_locktime(HEIGHT, 0);
    add(
        "height locktime not reached",
        t,
        Box::new(|e| matches!(e, TxError::NonFinal { .. }) && e.kind() == Kind::Premature),
    );

    let t = f.spend(&[f.coin_out(f.regular)], vec![f.to_bob(coins(9))]).with_locktime(MTP, 0);
    add("time locktime not reached", t, Box::new(|e| matches!(e, TxError::NonFinal { .. })));

    let mut t = f.pay_bob(coins(9));
    let mallory = key(3);
    sign_input(
        &mut t,
        0,
        &TxOut { value: coins(10), pubkey_hash: mallory.public_key().pubkey_hash() },
        &mallory,
    )
    .expect("mallory signs for her own hash");
    add(
        "signed by a key that does not own the coin",
        t,
        Box::new(|e| {
            matches!(e, TxError::Signature { error: SignatureError::PubkeyHashMismatch { .. }, .. })
        }),
    );

    let mut t = f.pay_bob(coins(9));
    t.inputs[0].signature[10] ^= 0x40;
    add(
        "corrupted signature",
        t,
        Box::new(|e| matches!(e, TxError::Signature { input: 0, .. }) && e.kind() == Kind::Invalid),
    );

    let mut t = f.pay_bob(coins(9));
    t.outputs[0].value = coins(8);
    add("output changed after signing", t, Box::new(|e| matches!(e, TxError::Signature { .. })));

    let mut t = f.pay_bob(coins(9));
    t.inputs[0].pubkey = [0xff; 33];
    add("garbage public key", t, Box::new(|e| matches!(e, TxError::Signature { .. })));

    let mut t = f.pay_bob(coins(9));
    let high_s = high_s_signature(&t.inputs[0].signature);
    t.inputs[0].signature = high_s;
    add(
        "high-S signature",
        t,
        Box::new(|e| matches!(e, TxError::Signature { error: SignatureError::HighS, .. })),
    );

    assert!(cases.len() >= 15, "the table has {} cases", cases.len());
    for (name, tx, check) in &cases {
        match loose(&f, tx) {
            Err(ref e) if check(e) => {}
            other => panic!("{name}: unexpected result {other:?}"),
        }
    }
}

/// Returns the same signature with s replaced by n - s (valid, but high-S).
fn high_s_signature(sig: &[u8; 64]) -> [u8; 64] {
    use ruint::aliases::U256;
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .expect("the secp256k1 order");
    let s = U256::from_be_slice(&sig[32..]);
    let mut out = *sig;
    out[32..].copy_from_slice(&(n - s).to_be_bytes::<32>());
    out
}

trait WithLocktime {
    fn with_locktime(self, locktime: u32, sequence: u32) -> Transaction;
}

impl WithLocktime for Transaction {
    /// Sets the locktime and every input's sequence, then re-signs as alice.
    fn with_locktime(mut self, locktime: u32, sequence: u32) -> Transaction {
        let f = Fixture::new();
        self.locktime = locktime;
        for input in &mut self.inputs {
            input.sequence = sequence;
        }
        let spent: Vec<TxOut> = self.inputs.iter().map(|i| f.view[&i.prev_out].output).collect();
        for (i, out) in spent.iter().enumerate() {
            sign_input(&mut self, i, out, &f.alice).expect("alice owns the fixture coins");
        }
        self
    }
}

/// Threads claim signatures in small runs; whatever the thread count, the first
/// bad signature in block order is the one reported, even with later ones bad too.
#[test]
fn the_first_bad_signature_is_reported_on_any_number_of_threads() {
    let f = Fixture::new();
    let alice_out = TxOut { value: coins(1), pubkey_hash: f.alice.public_key().pubkey_hash() };
    // Three transactions of 30 inputs each: 90 signatures, several claims' worth.
    let from: Vec<(OutPoint, TxOut)> = (0..90u8)
        .map(|i| (OutPoint { txid: Txid::from_byte_array([i; 32]), vout: 1 }, alice_out))
        .collect();
    let txs: Vec<Transaction> =
        from.chunks(30).map(|c| f.spend(c, vec![f.to_bob(coins(29))])).collect();
    let mut block = f.block(txs, coins(3));
    let coin = Coin { output: alice_out, height: 1, is_coinbase: false };
    let spends = BlockSpends {
        txids: block.txdata.iter().map(Transaction::txid).collect(),
        coins: vec![vec![], vec![coin; 30], vec![coin; 30], vec![coin; 30]],
        spent: Vec::new(),
        created: Vec::new(),
        fees: coins(3),
    };
    let threads = |n| NonZeroUsize::new(n).expect("n > 0");
    for n in 1..=4 {
        assert_eq!(check_block_signatures(&block, &spends, threads(n)), Ok(()), "{n} threads");
    }
    // Break inputs late in the block first, then an earlier one.
    for (tx, input) in [(3, 29), (3, 2), (2, 17)] {
        block.txdata[tx].inputs[input].signature[10] ^= 1;
    }
    for n in 1..=4 {
        let err = check_block_signatures(&block, &spends, threads(n)).expect_err("bad signatures");
        assert!(
            matches!(
                err,
                BlockError::Transaction {
                    index: 2,
                    error: TxError::Signature { input: 17, .. },
                    ..
                }
            ),
            "{n} threads: {err:?}"
        );
    }
    // Transactions named as verified are not checked again (the breakage above
    // stands for signatures checked once already); the others still are.
    let txid = |i: usize| spends.txids[i];
    let both = |t: &Txid| *t == txid(2) || *t == txid(3);
    assert_eq!(check_block_signatures_except(&block, &spends, threads(2), both), Ok(()));
    let err = check_block_signatures_except(&block, &spends, threads(2), |t| *t == txid(2))
        .expect_err("transaction 3 is checked");
    assert!(
        matches!(
            err,
            BlockError::Transaction { index: 3, error: TxError::Signature { input: 2, .. }, .. }
        ),
        "{err:?}"
    );
}

/// A run of blocks checked together reports the first bad input of the first
/// bad block, the error checking that block alone gives, on any thread count.
#[test]
fn a_run_of_blocks_reports_the_first_bad_block_as_checking_it_alone_does() {
    let f = Fixture::new();
    let alice_out = TxOut { value: coins(1), pubkey_hash: f.alice.public_key().pubkey_hash() };
    let coin = Coin { output: alice_out, height: 1, is_coinbase: false };
    // Four blocks of two 10-input transactions: less than a claim each.
    let blocks: Vec<(Block, BlockSpends)> = (0..4u8)
        .map(|b| {
            let from: Vec<(OutPoint, TxOut)> = (0..20u8)
                .map(|i| {
                    (OutPoint { txid: Txid::from_byte_array([b * 20 + i; 32]), vout: 1 }, alice_out)
                })
                .collect();
            let txs = from.chunks(10).map(|c| f.spend(c, vec![f.to_bob(coins(9))])).collect();
            let block = f.block(txs, coins(2));
            let spends = BlockSpends {
                txids: block.txdata.iter().map(Transaction::txid).collect(),
                coins: vec![vec![], vec![coin; 10], vec![coin; 10]],
                spent: Vec::new(),
                created: Vec::new(),
                fees: coins(2),
            };
            (block, spends)
        })
        .collect();
    let threads = |n| NonZeroUsize::new(n).expect("n > 0");
    let run = |blocks: &[(Block, BlockSpends)], n| {
        let pairs: Vec<(&Block, &BlockSpends)> = blocks.iter().map(|(b, s)| (b, s)).collect();
        check_blocks_signatures_except(&pairs, threads(n), |_| false)
    };
    for n in 1..=4 {
        assert_eq!(run(&blocks, n), Ok(()), "{n} threads");
    }
    let mut broken = blocks.clone();
    for (block, tx, input) in [(3, 1, 0), (2, 2, 9), (1, 2, 3), (1, 1, 7)] {
        broken[block].0.txdata[tx].inputs[input].signature[10] ^= 1;
    }
    let alone =
        check_block_signatures(&broken[1].0, &broken[1].1, threads(1)).expect_err("block 1 is bad");
    assert!(
        matches!(
            alone,
            BlockError::Transaction { index: 1, error: TxError::Signature { input: 7, .. }, .. }
        ),
        "{alone:?}"
    );
    for n in 1..=4 {
        assert_eq!(run(&broken, n), Err((1, alone.clone())), "{n} threads");
    }
}
