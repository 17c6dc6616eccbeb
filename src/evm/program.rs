//! A verifier as a program: snark-verifier's PLONK and SHPLONK verification, run once over a
//! loader of our own that records every step instead of computing it, gives a straight-line
//! list of operations on 32-byte words (calldata reads, field arithmetic, Keccak challenges,
//! the BN254 precompiles). The Solidity renderers ([`super::yul`]) turn it into a contract and
//! [`Program::accepts`] runs it natively, so that what the contract decides can be checked
//! against snark-verifier's own verifier without an EVM.
//!
//! The words of a program are of two kinds: constants (the verifying key's commitments, the
//! coefficients of its gates, the SRS's G2 points), laid out once, and variables, each written by
//! exactly one operation. Operations on constants alone are folded while tracing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};
use std::rc::Rc;

use alloy::primitives::{keccak256, U256};
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fq, Fr, G1Affine, G2Affine, G2Prepared, Gt, G1};
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use halo2_base::halo2_proofs::poly::commitment::ParamsProver;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use snark_verifier_sdk::snark_verifier::loader::{EcPointLoader, LoadedEcPoint, LoadedScalar, Loader, ScalarLoader};
use snark_verifier_sdk::snark_verifier::pcs::kzg::{KzgAccumulator, KzgSuccinctVerifyingKey};
use snark_verifier_sdk::snark_verifier::pcs::AccumulatorEncoding;
use snark_verifier_sdk::snark_verifier::util::arithmetic::{
    CurveAffine, Field, FieldOps, MillerLoopResult, PrimeCurveAffine, PrimeField,
};
use snark_verifier_sdk::snark_verifier::util::transcript::{Transcript, TranscriptRead};
use snark_verifier_sdk::snark_verifier::verifier::plonk::PlonkSuccinctVerifier;
use snark_verifier_sdk::snark_verifier::verifier::SnarkVerifier;
use snark_verifier_sdk::snark_verifier::Error as VerifierError;
use snark_verifier_sdk::{BITS, LIMBS, SHPLONK};

use halo2_base::halo2_proofs::halo2curves::pairing::MultiMillerLoop;

use crate::error::{EvmError, Result};
use crate::prove::snark::protocol_of;

/// Where an operand lives: a word (or the first of consecutive words) of the constant table or
/// of the variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Word {
    /// Constant-table index.
    Const(u32),
    /// Variable index.
    Var(u32),
}

/// One step of a verification. `dst` names the first variable written; points take two words
/// (x, y), the point at infinity being (0, 0) as for the precompiles.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields are named in each variant's line
pub enum Op {
    /// The calldata word at byte `offset`, refused unless below the scalar field's modulus r.
    LoadScalar { dst: u32, offset: u32 },
    /// The G1 point at byte `offset` (x, then y), refused unless both coordinates are below the
    /// base field's modulus q and the point is on the curve (which excludes (0, 0)).
    LoadPoint { dst: u32, offset: u32 },
    /// The G1 point whose x and y are each `limbs.len() / 2` limbs of `bits` bits, lowest first
    /// (x's limbs, then y's): each limb refused above its width (the top one also above what
    /// 256 bits leave it), then the point checked as for `LoadPoint`.
    PointFromLimbs { dst: u32, limbs: Vec<Word>, bits: u32 },
    /// One word copied.
    Copy { dst: u32, src: Word },
    /// a + b mod r.
    Add { dst: u32, a: Word, b: Word },
    /// a − b mod r.
    Sub { dst: u32, a: Word, b: Word },
    /// a · b mod r.
    Mul { dst: u32, a: Word, b: Word },
    /// a · b + c mod r (a product and the sum that alone reads it, fused: see [`Program::fused`]).
    MulAdd { dst: u32, a: Word, b: Word, c: Word },
    /// c − a · b mod r (fused likewise).
    MulSub { dst: u32, a: Word, b: Word, c: Word },
    /// Montgomery's batch inversion, as the tracer lays it out in operations (fused, see
    /// [`Program::fused`]): with p_i = src_0 ⋯ src_i and inv = p_(n−1)^(r−2), from the last
    /// value down, dst_i = p_(i−1) · inv (dst_0 = inv) and then inv · src_i becomes inv.
    BatchInvert { dsts: Vec<u32>, srcs: Vec<Word> },
    /// base^exp mod r, by the modexp precompile; exp = r − 2 inverts.
    Pow { dst: u32, base: Word, exp: Word },
    /// The Fiat–Shamir challenge: keccak256 of the variables `start .. start + len` (followed by
    /// one 0x01 byte when `len` is 1, as snark-verifier's transcript does), written whole to
    /// `hash` and reduced mod r to `dst`.
    Squeeze { dst: u32, hash: u32, start: u32, len: u32 },
    /// a + b on G1 (the ecAdd precompile).
    EcAdd { dst: u32, a: Word, b: Word },
    /// scalar · point on G1 (the ecMul precompile).
    EcMul { dst: u32, point: Word, scalar: Word },
    /// acc + scalar · point on G1 (an ecMul and the ecAdd that alone reads it, fused).
    EcMulAdd { dst: u32, acc: Word, point: Word, scalar: Word },
    /// The pairing check e(lhs, g2) · e(rhs, −s·g2) = 1; `g2` names eight constants: G2's
    /// generator and −s·G2, each as (x.c1, x.c0, y.c1, y.c0), the precompile's order.
    Pairing { lhs: Word, rhs: Word, g2: Word },
    /// `words` consecutive words of `a` and `b` are equal.
    AssertEq { a: Word, b: Word, words: u32 },
}

/// A traced verifier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    /// The constant table.
    pub constants: Vec<U256>,
    /// How many variables the operations write.
    pub vars: u32,
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Public instances, the first words of the calldata.
    pub num_instances: u32,
    /// Bytes of calldata the verifier reads: the instances, then the proof. Any other length
    /// is refused.
    pub calldata_len: u32,
    /// Where each step of the verification starts: (index of its first operation, what it does).
    pub phases: Vec<(usize, String)>,
    /// The batch inversions: the operations that compute each (from, to) and what they invert
    /// into what, for [`Program::fused`].
    pub inversions: Vec<Inversion>,
}

/// A batch inversion as traced: operations `from .. to` write `dsts`, the inverses of `srcs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inversion {
    /// The first operation.
    pub from: usize,
    /// The operation after the last.
    pub to: usize,
    /// The values inverted.
    pub srcs: Vec<Word>,
    /// Their inverses.
    pub dsts: Vec<u32>,
}

/// The scalar field's modulus r.
pub fn scalar_modulus() -> U256 {
    U256::from_le_bytes((-Fr::ONE).to_repr()) + U256::from(1)
}

/// The base field's modulus q.
pub fn base_modulus() -> U256 {
    U256::from_le_bytes((-Fq::ONE).to_repr()) + U256::from(1)
}

fn fr_word(value: &Fr) -> U256 {
    U256::from_le_bytes(value.to_repr())
}

fn point_words(point: &G1Affine) -> [U256; 2] {
    match Option::from(point.coordinates()) {
        Some(c) if !bool::from(point.is_identity()) => {
            let c: snark_verifier_sdk::snark_verifier::util::arithmetic::Coordinates<G1Affine> = c;
            [U256::from_le_bytes(c.x().to_repr()), U256::from_le_bytes(c.y().to_repr())]
        }
        _ => [U256::ZERO; 2],
    }
}

/// G2 in the pairing precompile's order: x.c1, x.c0, y.c1, y.c0.
pub fn g2_words(point: &G2Affine) -> [U256; 4] {
    let x = point.x;
    let y = point.y;
    [x.c1, x.c0, y.c1, y.c0].map(|c| U256::from_le_bytes(c.to_repr()))
}

/// Records the operations of a verification.
#[derive(Clone, Default)]
pub struct Tracer(Rc<RefCell<Trace>>);

#[derive(Default)]
struct Trace {
    program: Program,
    blocks: HashMap<Vec<U256>, u32>,
    stream: u32,
    /// Each field operation already emitted, by (kind, operands): the same value is not
    /// computed twice.
    computed: HashMap<(Arith, Word, Word), u32>,
    /// The variables that are 0 − x, with their x: adding one subtracts x instead.
    negations: HashMap<u32, Word>,
}

/// The field operations that are shared when repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Arith {
    Add,
    Sub,
    Mul,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trace = self.0.borrow();
        write!(f, "Tracer({} ops, {} vars)", trace.program.ops.len(), trace.program.vars)
    }
}

impl PartialEq for Tracer {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Tracer {
    fn alloc(&self, words: u32) -> u32 {
        let mut trace = self.0.borrow_mut();
        let first = trace.program.vars;
        trace.program.vars += words;
        first
    }

    fn push(&self, op: Op) {
        self.0.borrow_mut().program.ops.push(op);
    }

    /// The constant-table index of `words`, laid out once per distinct block.
    fn constant(&self, words: &[U256]) -> Word {
        let mut trace = self.0.borrow_mut();
        if let Some(&index) = trace.blocks.get(words) {
            return Word::Const(index);
        }
        let index = trace.program.constants.len() as u32;
        trace.program.constants.extend_from_slice(words);
        trace.blocks.insert(words.to_vec(), index);
        Word::Const(index)
    }

    fn scalar_word(&self, value: &ScalarValue) -> Word {
        match value {
            ScalarValue::Const(c) => self.constant(&[fr_word(c)]),
            ScalarValue::Var(v) => Word::Var(*v),
        }
    }

    fn point_word(&self, value: &PointValue) -> Word {
        match value {
            PointValue::Const(p) => self.constant(&point_words(p)),
            PointValue::Var(v) => Word::Var(*v),
        }
    }

    fn scalar(&self, value: ScalarValue) -> TracedScalar {
        TracedScalar { tracer: self.clone(), value }
    }

    fn point(&self, value: PointValue) -> TracedPoint {
        TracedPoint { tracer: self.clone(), value }
    }

    /// A fresh variable written by `op(dst)`.
    fn emit_scalar(&self, op: impl FnOnce(u32) -> Op) -> TracedScalar {
        let dst = self.alloc(1);
        self.push(op(dst));
        self.scalar(ScalarValue::Var(dst))
    }

    fn emit_point(&self, op: impl FnOnce(u32) -> Op) -> TracedPoint {
        let dst = self.alloc(2);
        self.push(op(dst));
        self.point(PointValue::Var(dst))
    }

    /// Reads the next calldata scalar.
    fn read_scalar(&self) -> TracedScalar {
        let offset = self.advance(0x20);
        self.emit_scalar(|dst| Op::LoadScalar { dst, offset })
    }

    fn read_point(&self) -> TracedPoint {
        let offset = self.advance(0x40);
        self.emit_point(|dst| Op::LoadPoint { dst, offset })
    }

    fn advance(&self, bytes: u32) -> u32 {
        let mut trace = self.0.borrow_mut();
        let offset = trace.stream;
        trace.stream += bytes;
        offset
    }

    /// `a kind b` in a fresh variable, or the variable that already holds it.
    fn arith(&self, kind: Arith, a: &ScalarValue, b: &ScalarValue) -> TracedScalar {
        let (mut a, mut b) = (self.scalar_word(a), self.scalar_word(b));
        if kind != Arith::Sub && b < a {
            std::mem::swap(&mut a, &mut b);
        }
        if let Some(&dst) = self.0.borrow().computed.get(&(kind, a, b)) {
            return self.scalar(ScalarValue::Var(dst));
        }
        let traced = self.emit_scalar(|dst| match kind {
            Arith::Add => Op::Add { dst, a, b },
            Arith::Sub => Op::Sub { dst, a, b },
            Arith::Mul => Op::Mul { dst, a, b },
        });
        if let ScalarValue::Var(dst) = traced.value {
            self.0.borrow_mut().computed.insert((kind, a, b), dst);
        }
        traced
    }

    /// The x of a variable that is 0 − x.
    fn negation_of(&self, value: &ScalarValue) -> Option<ScalarValue> {
        let ScalarValue::Var(v) = value else { return None };
        match self.0.borrow().negations.get(v)? {
            Word::Var(x) => Some(ScalarValue::Var(*x)),
            Word::Const(_) => None,
        }
    }

    fn add(&self, a: &ScalarValue, b: &ScalarValue) -> TracedScalar {
        match (a, b) {
            (ScalarValue::Const(x), ScalarValue::Const(y)) => self.scalar(ScalarValue::Const(*x + y)),
            (ScalarValue::Const(z), other) | (other, ScalarValue::Const(z)) if *z == Fr::ZERO => self.scalar(*other),
            _ => match (self.negation_of(a), self.negation_of(b)) {
                (_, Some(x)) => self.sub(a, &x),
                (Some(x), None) => self.sub(b, &x),
                (None, None) => self.arith(Arith::Add, a, b),
            },
        }
    }

    fn sub(&self, a: &ScalarValue, b: &ScalarValue) -> TracedScalar {
        match (a, b) {
            (ScalarValue::Const(x), ScalarValue::Const(y)) => self.scalar(ScalarValue::Const(*x - y)),
            (other, ScalarValue::Const(z)) if *z == Fr::ZERO => self.scalar(*other),
            _ => {
                if let Some(x) = self.negation_of(b) {
                    return self.add(a, &x);
                }
                let difference = self.arith(Arith::Sub, a, b);
                if let (ScalarValue::Const(z), ScalarValue::Var(dst)) = (a, difference.value) {
                    if *z == Fr::ZERO {
                        let x = self.scalar_word(b);
                        self.0.borrow_mut().negations.insert(dst, x);
                    }
                }
                difference
            }
        }
    }

    fn mul(&self, a: &ScalarValue, b: &ScalarValue) -> TracedScalar {
        match (a, b) {
            (ScalarValue::Const(x), ScalarValue::Const(y)) => self.scalar(ScalarValue::Const(*x * y)),
            (ScalarValue::Const(z), _) | (_, ScalarValue::Const(z)) if *z == Fr::ZERO => {
                self.scalar(ScalarValue::Const(Fr::ZERO))
            }
            (ScalarValue::Const(one), other) | (other, ScalarValue::Const(one)) if *one == Fr::ONE => {
                self.scalar(*other)
            }
            (ScalarValue::Const(c), other) | (other, ScalarValue::Const(c)) if self.negation_of(other).is_some() => {
                let x = self.negation_of(other).expect("checked");
                self.mul(&x, &ScalarValue::Const(-*c))
            }
            _ => self.arith(Arith::Mul, a, b),
        }
    }

    fn pow(&self, base: &ScalarValue, exp: Word) -> TracedScalar {
        let base = self.scalar_word(base);
        self.emit_scalar(|dst| Op::Pow { dst, base, exp })
    }

    fn invert(&self, value: &ScalarValue) -> TracedScalar {
        match value {
            ScalarValue::Const(c) => self.scalar(ScalarValue::Const(Option::from(c.invert()).unwrap_or(Fr::ZERO))),
            ScalarValue::Var(_) => {
                let exp = self.constant(&[fr_word(&-Fr::from(2))]);
                self.pow(value, exp)
            }
        }
    }

    fn ec_add(&self, a: &PointValue, b: &PointValue) -> TracedPoint {
        match (a, b) {
            (PointValue::Const(x), PointValue::Const(y)) => self.point(PointValue::Const((*x + y).into())),
            (PointValue::Const(o), other) | (other, PointValue::Const(o)) if bool::from(o.is_identity()) => {
                self.point(*other)
            }
            _ => {
                let (a, b) = (self.point_word(a), self.point_word(b));
                self.emit_point(|dst| Op::EcAdd { dst, a, b })
            }
        }
    }

    fn ec_mul(&self, point: &PointValue, scalar: &ScalarValue) -> TracedPoint {
        match (point, scalar) {
            (PointValue::Const(p), ScalarValue::Const(s)) => self.point(PointValue::Const((*p * s).into())),
            (_, ScalarValue::Const(s)) if *s == Fr::ZERO => self.point(PointValue::Const(G1Affine::identity())),
            (p, ScalarValue::Const(s)) if *s == Fr::ONE => self.point(*p),
            _ => {
                let (point, scalar) = (self.point_word(point), self.scalar_word(scalar));
                self.emit_point(|dst| Op::EcMul { dst, point, scalar })
            }
        }
    }

    /// Copies words into fresh consecutive variables (Keccak reads memory in one piece).
    fn gather(&self, words: &[Word]) -> u32 {
        let start = self.alloc(words.len() as u32);
        for (i, src) in words.iter().enumerate() {
            self.push(Op::Copy { dst: start + i as u32, src: *src });
        }
        start
    }

    /// Names the step whose operations follow.
    fn phase(&self, what: &str) {
        let mut trace = self.0.borrow_mut();
        let at = trace.program.ops.len();
        trace.program.phases.retain(|(i, _)| *i != at);
        trace.program.phases.push((at, what.to_string()));
    }

    fn finish(&self) -> Program {
        let trace = self.0.borrow();
        let mut program = Program { calldata_len: trace.stream, ..trace.program.clone() };
        program.eliminate_dead_code();
        program
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ScalarValue {
    Const(Fr),
    Var(u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PointValue {
    Const(G1Affine),
    Var(u32),
}

/// A scalar of a traced verification.
#[derive(Clone)]
pub struct TracedScalar {
    tracer: Tracer,
    value: ScalarValue,
}

/// A G1 point of a traced verification.
#[derive(Clone)]
pub struct TracedPoint {
    tracer: Tracer,
    value: PointValue,
}

impl fmt::Debug for TracedScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.value)
    }
}

impl fmt::Debug for TracedPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.value)
    }
}

impl PartialEq for TracedScalar {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl PartialEq for TracedPoint {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

macro_rules! traced_ops {
    ($trait:ident, $method:ident, $assign:ident, $assign_method:ident, $tracer_fn:ident) => {
        impl $trait for TracedScalar {
            type Output = TracedScalar;
            fn $method(self, rhs: TracedScalar) -> TracedScalar {
                self.tracer.$tracer_fn(&self.value, &rhs.value)
            }
        }
        impl<'a> $trait<&'a TracedScalar> for TracedScalar {
            type Output = TracedScalar;
            fn $method(self, rhs: &'a TracedScalar) -> TracedScalar {
                self.tracer.$tracer_fn(&self.value, &rhs.value)
            }
        }
        impl $assign for TracedScalar {
            fn $assign_method(&mut self, rhs: TracedScalar) {
                *self = self.tracer.$tracer_fn(&self.value, &rhs.value);
            }
        }
        impl<'a> $assign<&'a TracedScalar> for TracedScalar {
            fn $assign_method(&mut self, rhs: &'a TracedScalar) {
                *self = self.tracer.$tracer_fn(&self.value, &rhs.value);
            }
        }
    };
}

traced_ops!(Add, add, AddAssign, add_assign, add);
traced_ops!(Sub, sub, SubAssign, sub_assign, sub);
traced_ops!(Mul, mul, MulAssign, mul_assign, mul);

impl Neg for TracedScalar {
    type Output = TracedScalar;
    fn neg(self) -> TracedScalar {
        self.tracer.sub(&ScalarValue::Const(Fr::ZERO), &self.value)
    }
}

impl FieldOps for TracedScalar {
    fn invert(&self) -> Option<Self> {
        match self.value {
            ScalarValue::Const(c) => Option::from(c.invert()).map(|c| self.tracer.scalar(ScalarValue::Const(c))),
            ScalarValue::Var(_) => Some(self.tracer.invert(&self.value)),
        }
    }
}

impl LoadedScalar<Fr> for TracedScalar {
    type Loader = Tracer;

    fn loader(&self) -> &Tracer {
        &self.tracer
    }

    fn pow_var(&self, exp: &Self, _exp_max_bits: usize) -> Self {
        let exp = self.tracer.scalar_word(&exp.value);
        self.tracer.pow(&self.value, exp)
    }
}

impl LoadedEcPoint<G1Affine> for TracedPoint {
    type Loader = Tracer;

    fn loader(&self) -> &Tracer {
        &self.tracer
    }
}

impl ScalarLoader<Fr> for Tracer {
    type LoadedScalar = TracedScalar;

    fn load_const(&self, value: &Fr) -> TracedScalar {
        self.scalar(ScalarValue::Const(*value))
    }

    fn assert_eq(&self, _annotation: &str, lhs: &TracedScalar, rhs: &TracedScalar) {
        let (a, b) = (self.scalar_word(&lhs.value), self.scalar_word(&rhs.value));
        self.push(Op::AssertEq { a, b, words: 1 });
    }

    /// Montgomery's trick: one inversion (one modexp) for all of `values`.
    fn batch_invert<'a>(values: impl IntoIterator<Item = &'a mut TracedScalar>) {
        let mut values: Vec<&'a mut TracedScalar> = values.into_iter().collect();
        let Some(first) = values.first() else { return };
        let tracer = first.tracer.clone();
        let from = tracer.0.borrow().program.ops.len();
        // Only inversions of variables into variables are recorded (a constant would add a word
        // to the constant table here).
        let vars = |values: &[&'a mut TracedScalar]| -> Option<Vec<u32>> {
            values
                .iter()
                .map(|v| match v.value {
                    ScalarValue::Var(x) => Some(x),
                    ScalarValue::Const(_) => None,
                })
                .collect()
        };
        let srcs = vars(&values);
        let mut products = Vec::with_capacity(values.len());
        let mut product = tracer.load_one();
        for value in values.iter() {
            product *= &**value;
            products.push(product.clone());
        }
        let mut inverse = tracer.invert(&product.value);
        for i in (0..values.len()).rev() {
            let before = if i == 0 { tracer.load_one() } else { products[i - 1].clone() };
            let inverted = before * &inverse;
            inverse *= &*values[i];
            *values[i] = inverted;
        }
        let mut trace = tracer.0.borrow_mut();
        let to = trace.program.ops.len();
        if let (Some(srcs), Some(dsts)) = (srcs, vars(&values)) {
            let srcs = srcs.into_iter().map(Word::Var).collect();
            trace.program.inversions.push(Inversion { from, to, srcs, dsts });
        }
    }
}

impl EcPointLoader<G1Affine> for Tracer {
    type LoadedEcPoint = TracedPoint;

    fn ec_point_load_const(&self, value: &G1Affine) -> TracedPoint {
        self.point(PointValue::Const(*value))
    }

    fn ec_point_assert_eq(&self, _annotation: &str, lhs: &TracedPoint, rhs: &TracedPoint) {
        let (a, b) = (self.point_word(&lhs.value), self.point_word(&rhs.value));
        self.push(Op::AssertEq { a, b, words: 2 });
    }

    fn multi_scalar_multiplication(pairs: &[(&TracedScalar, &TracedPoint)]) -> TracedPoint {
        let tracer = match pairs.first() {
            Some((scalar, _)) => scalar.tracer.clone(),
            None => return Tracer::default().point(PointValue::Const(G1Affine::identity())),
        };
        pairs
            .iter()
            .map(|(scalar, point)| tracer.ec_mul(&point.value, &scalar.value))
            .reduce(|acc, term| tracer.ec_add(&acc.value, &term.value))
            .expect("pairs is not empty")
    }
}

impl Loader<G1Affine> for Tracer {}

/// The Keccak transcript of snark-verifier's EVM verifier, over traced values: what is absorbed
/// since the last challenge, as variables, hashed in one piece.
pub struct TracedTranscript {
    tracer: Tracer,
    absorbed: Vec<Word>,
}

impl TracedTranscript {
    /// A transcript reading calldata from its start.
    pub fn new(tracer: &Tracer) -> Self {
        Self { tracer: tracer.clone(), absorbed: Vec::new() }
    }

    /// Reads `n` public instances, the first words of the calldata.
    pub fn load_instances(&mut self, n: usize) -> Vec<TracedScalar> {
        (0..n).map(|_| self.tracer.read_scalar()).collect()
    }

    fn absorb(&mut self, first: Word, words: u32) {
        match first {
            Word::Var(v) => self.absorbed.extend((0..words).map(|i| Word::Var(v + i))),
            Word::Const(c) => self.absorbed.extend((0..words).map(|i| Word::Const(c + i))),
        }
    }
}

impl Transcript<G1Affine, Tracer> for TracedTranscript {
    fn loader(&self) -> &Tracer {
        &self.tracer
    }

    fn squeeze_challenge(&mut self) -> TracedScalar {
        let consecutive = self.absorbed.windows(2).all(|w| matches!(w, [Word::Var(a), Word::Var(b)] if *b == *a + 1))
            && matches!(self.absorbed.first(), Some(Word::Var(_)));
        let start = match (consecutive, self.absorbed.first()) {
            (true, Some(Word::Var(v))) => *v,
            _ => self.tracer.gather(&self.absorbed),
        };
        let len = self.absorbed.len() as u32;
        let dst = self.tracer.alloc(1);
        let hash = self.tracer.alloc(1);
        self.tracer.push(Op::Squeeze { dst, hash, start, len });
        self.absorbed = vec![Word::Var(hash)];
        self.tracer.scalar(ScalarValue::Var(dst))
    }

    fn common_ec_point(&mut self, point: &TracedPoint) -> std::result::Result<(), VerifierError> {
        let word = self.tracer.point_word(&point.value);
        self.absorb(word, 2);
        Ok(())
    }

    fn common_scalar(&mut self, scalar: &TracedScalar) -> std::result::Result<(), VerifierError> {
        let word = self.tracer.scalar_word(&scalar.value);
        self.absorb(word, 1);
        Ok(())
    }
}

impl TranscriptRead<G1Affine, Tracer> for TracedTranscript {
    fn read_scalar(&mut self) -> std::result::Result<TracedScalar, VerifierError> {
        let scalar = self.tracer.read_scalar();
        self.common_scalar(&scalar)?;
        Ok(scalar)
    }

    fn read_ec_point(&mut self) -> std::result::Result<TracedPoint, VerifierError> {
        let point = self.tracer.read_point();
        self.common_ec_point(&point)?;
        Ok(point)
    }
}

/// The accumulator an aggregation proof carries in its first instances: four coordinates of
/// `LIMBS` limbs of `BITS` bits, as snark-verifier-sdk's aggregation circuit exposes it.
#[derive(Clone, Debug)]
pub struct TracedLimbs;

impl AccumulatorEncoding<G1Affine, Tracer> for TracedLimbs {
    type Accumulator = KzgAccumulator<G1Affine, Tracer>;

    fn from_repr(limbs: &[&TracedScalar]) -> std::result::Result<Self::Accumulator, VerifierError> {
        if limbs.len() != 4 * LIMBS {
            return Err(VerifierError::InvalidInstances);
        }
        let tracer = limbs[0].tracer.clone();
        let point = |limbs: &[&TracedScalar]| {
            let limbs = limbs.iter().map(|l| tracer.scalar_word(&l.value)).collect();
            tracer.emit_point(|dst| Op::PointFromLimbs { dst, limbs, bits: BITS as u32 })
        };
        Ok(KzgAccumulator::new(point(&limbs[..2 * LIMBS]), point(&limbs[2 * LIMBS..])))
    }
}

/// Traces the verifier of proofs of `vk` (SHPLONK, Keccak transcript) with one instance column
/// of `num_instances`; for an aggregation circuit (`aggregation`), its first instances are a KZG
/// accumulator that is folded into the final pairing check.
pub fn trace_verifier(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    num_instances: usize,
    aggregation: bool,
) -> Result<Program> {
    let protocol = protocol_of(params, vk, num_instances, aggregation);
    let svk = KzgSuccinctVerifyingKey::new(params.get_g()[0]);
    let tracer = Tracer::default();
    let protocol = protocol.loaded(&tracer);
    let mut transcript = TracedTranscript::new(&tracer);
    tracer.phase("the public instances, each below r");
    let instances = vec![transcript.load_instances(num_instances)];
    tracer.phase("the proof: the commitments (points on the curve) and evaluations (below r), and the Fiat-Shamir challenges they determine");
    let failed = |e: VerifierError| EvmError::Generate(format!("{e:?}"));
    type Succinct = PlonkSuccinctVerifier<SHPLONK, TracedLimbs>;
    let proof = Succinct::read_proof(&svk, &protocol, &instances, &mut transcript).map_err(failed)?;
    tracer.phase("the constraints at the challenge point (gates, permutation, lookups, vanishing argument), then the SHPLONK multi-opening reduced to one KZG accumulator");
    let accumulators = Succinct::verify(&svk, &protocol, &instances, &proof).map_err(failed)?;
    if accumulators.len() > 1 {
        tracer.phase(
            "the accumulator the aggregated proofs carry, folded with this proof's by a random linear combination",
        );
    }
    let KzgAccumulator { lhs, rhs } = fold(&tracer, accumulators);
    tracer.phase("the final pairing check");
    let [g2, minus_s_g2] = [params.g2(), -params.s_g2()].map(|p| g2_words(&p));
    let g2 = tracer.constant(&[g2, minus_s_g2].concat());
    let (lhs, rhs) = (tracer.point_word(&lhs.value), tracer.point_word(&rhs.value));
    tracer.push(Op::Pairing { lhs, rhs, g2 });
    let mut program = tracer.finish();
    program.num_instances = num_instances as u32;
    Ok(program)
}

/// Folds accumulators into one by a random linear combination, its challenge the Keccak hash of
/// all of their points: one pairing check decides them all.
fn fold(tracer: &Tracer, mut accumulators: Vec<KzgAccumulator<G1Affine, Tracer>>) -> KzgAccumulator<G1Affine, Tracer> {
    if accumulators.len() == 1 {
        return accumulators.pop().expect("one accumulator");
    }
    let words: Vec<Word> = accumulators
        .iter()
        .flat_map(|acc| [&acc.lhs, &acc.rhs])
        .flat_map(|p| match tracer.point_word(&p.value) {
            Word::Var(v) => [Word::Var(v), Word::Var(v + 1)],
            Word::Const(c) => [Word::Const(c), Word::Const(c + 1)],
        })
        .collect();
    let start = tracer.gather(&words);
    let dst = tracer.alloc(1);
    let hash = tracer.alloc(1);
    tracer.push(Op::Squeeze { dst, hash, start, len: words.len() as u32 });
    let challenge = tracer.scalar(ScalarValue::Var(dst));
    let powers = challenge.powers(accumulators.len());
    let combine = |points: Vec<&TracedPoint>| {
        let pairs: Vec<(&TracedScalar, &TracedPoint)> = powers.iter().zip(points).collect();
        Tracer::multi_scalar_multiplication(&pairs)
    };
    let lhs = combine(accumulators.iter().map(|a| &a.lhs).collect());
    let rhs = combine(accumulators.iter().map(|a| &a.rhs).collect());
    KzgAccumulator::new(lhs, rhs)
}

impl Program {
    /// Runs the verification natively on `calldata` (instances, then proof): whether the
    /// contract rendered from this program accepts it.
    pub fn accepts(&self, calldata: &[u8]) -> bool {
        calldata.len() == self.calldata_len as usize && Machine::new(self, calldata).run().is_some()
    }

    /// How many operations of each kind: precompile calls dominate the gas.
    pub fn count(&self, kind: fn(&Op) -> bool) -> usize {
        self.ops.iter().filter(|op| kind(op)).count()
    }
}

impl Program {
    /// Drops the operations whose results nothing reads (a negation folded into the sum that
    /// used it, say). Only computations go: every check of the calldata, every assertion and
    /// the pairing stay.
    fn eliminate_dead_code(&mut self) {
        let mut live = vec![false; self.vars as usize];
        let mut keep = vec![true; self.ops.len()];
        for (i, op) in self.ops.iter().enumerate().rev() {
            let pure = matches!(
                op,
                Op::Copy { .. }
                    | Op::Add { .. }
                    | Op::Sub { .. }
                    | Op::Mul { .. }
                    | Op::MulAdd { .. }
                    | Op::MulSub { .. }
                    | Op::BatchInvert { .. }
                    | Op::Pow { .. }
                    | Op::EcAdd { .. }
                    | Op::EcMul { .. }
                    | Op::EcMulAdd { .. }
                    | Op::Squeeze { .. }
            );
            let read = op.writes().iter().any(|&(dst, words)| (dst..dst + words).any(|v| live[v as usize]));
            if pure && !read {
                keep[i] = false;
                continue;
            }
            op.reads(|word, words| {
                if let Word::Var(v) = word {
                    (v..v + words).for_each(|v| live[v as usize] = true);
                }
            });
        }
        self.retain_ops(keep);
    }

    /// Keeps the operations flagged in `keep`, with the phases moved to the operations that
    /// now start them.
    fn retain_ops(&mut self, keep: Vec<bool>) {
        let kept_before: Vec<usize> = keep
            .iter()
            .scan(0, |n, &k| {
                let at = *n;
                *n += k as usize;
                Some(at)
            })
            .collect();
        let total = kept_before.last().map_or(0, |&n| n + keep[keep.len() - 1] as usize);
        let moved = |at: usize| kept_before.get(at).copied().unwrap_or(total);
        for (at, _) in &mut self.phases {
            *at = moved(*at);
        }
        for inversion in &mut self.inversions {
            (inversion.from, inversion.to) = (moved(inversion.from), moved(inversion.to));
        }
        let mut flags = keep.into_iter();
        self.ops.retain(|_| flags.next().unwrap_or(true));
    }

    /// The same verification with fewer operations, for an interpreter that pays for each one
    /// (the shared verifier): a product read only by a sum or difference (as its subtrahend)
    /// becomes a multiply-add ([`Op::MulAdd`], [`Op::MulSub`]), and an ecMul read only by an
    /// ecAdd becomes [`Op::EcMulAdd`]. Variables are written once, so the product's operands
    /// still hold their values where the sum is; a layout of the result keeps them alive there.
    pub fn fused(&self) -> Program {
        self.fused_with(true)
    }

    /// [`Program::fused`], with batch inversions as one operation each ([`Op::BatchInvert`])
    /// when `inversions`: where the tracer recorded one whose operations write nothing read
    /// after them but the inverses.
    pub fn fused_with(&self, inversions: bool) -> Program {
        let base = if inversions { self.with_batch_inversions() } else { self.clone() };
        base.fuse_products()
    }

    fn with_batch_inversions(&self) -> Program {
        let mut ops = self.ops.clone();
        let mut keep = vec![true; ops.len()];
        for inversion in &self.inversions {
            let range = inversion.from..inversion.to;
            let arithmetic = |op: &Op| matches!(op, Op::Mul { .. } | Op::Pow { .. });
            if range.is_empty() || !self.ops[range.clone()].iter().all(arithmetic) {
                continue;
            }
            let written: std::collections::HashSet<u32> =
                self.ops[range.clone()].iter().flat_map(|op| op.writes()).map(|(v, _)| v).collect();
            let mut read_after = false;
            let mut written_elsewhere = false;
            let outside = self.ops.iter().enumerate().filter(|(i, _)| !range.contains(i)).map(|(_, op)| op);
            for op in outside {
                op.reads(|word, _| {
                    if let Word::Var(v) = word {
                        read_after |= written.contains(&v) && !inversion.dsts.contains(&v);
                    }
                });
                written_elsewhere |= op.writes().iter().any(|(v, _)| inversion.dsts.contains(v));
            }
            if read_after || written_elsewhere {
                continue;
            }
            ops[inversion.from] = Op::BatchInvert { dsts: inversion.dsts.clone(), srcs: inversion.srcs.clone() };
            keep[range.start + 1..range.end].iter_mut().for_each(|k| *k = false);
        }
        let mut program = Program { ops, inversions: Vec::new(), ..self.clone() };
        program.retain_ops(keep);
        program
    }

    /// How many operations read each variable (every word of a multi-word read counts: a
    /// challenge hashes runs of words, a point is two).
    pub(crate) fn readers(&self) -> Vec<u32> {
        let mut reads = vec![0u32; self.vars as usize];
        for op in &self.ops {
            op.reads(|word, words| {
                if let Word::Var(v) = word {
                    (v..v + words).for_each(|v| reads[v as usize] += 1);
                }
            });
        }
        reads
    }

    fn fuse_products(&self) -> Program {
        let reads = self.readers();
        let mut producer = vec![usize::MAX; self.vars as usize];
        for (i, op) in self.ops.iter().enumerate() {
            for (dst, _) in op.writes() {
                producer[dst as usize] = i;
            }
        }
        let mut ops = self.ops.clone();
        let mut keep = vec![true; ops.len()];
        // The product behind `word` when nothing else reads it and it is not fused yet.
        let product = |word: Word, keep: &[bool], ops: &[Op]| -> Option<(usize, Word, Word)> {
            let Word::Var(v) = word else { return None };
            let at = producer[v as usize];
            match ops.get(at)? {
                Op::Mul { a, b, .. } if reads[v as usize] == 1 && keep[at] => Some((at, *a, *b)),
                _ => None,
            }
        };
        let scaled = |word: Word, keep: &[bool], ops: &[Op]| -> Option<(usize, Word, Word)> {
            let Word::Var(v) = word else { return None };
            let at = producer[v as usize];
            match ops.get(at)? {
                Op::EcMul { point, scalar, .. } if reads[v as usize] == 1 && reads[v as usize + 1] == 1 && keep[at] => {
                    Some((at, *point, *scalar))
                }
                _ => None,
            }
        };
        for i in 0..ops.len() {
            let fused = match ops[i] {
                Op::Add { dst, a, b } => {
                    let by_b = product(b, &keep, &ops).map(|(at, x, y)| (at, Op::MulAdd { dst, a: x, b: y, c: a }));
                    by_b.or_else(|| {
                        product(a, &keep, &ops).map(|(at, x, y)| (at, Op::MulAdd { dst, a: x, b: y, c: b }))
                    })
                }
                Op::Sub { dst, a, b } => {
                    product(b, &keep, &ops).map(|(at, x, y)| (at, Op::MulSub { dst, a: x, b: y, c: a }))
                }
                Op::EcAdd { dst, a, b } => {
                    let by_b = scaled(b, &keep, &ops)
                        .map(|(at, point, scalar)| (at, Op::EcMulAdd { dst, acc: a, point, scalar }));
                    by_b.or_else(|| {
                        scaled(a, &keep, &ops)
                            .map(|(at, point, scalar)| (at, Op::EcMulAdd { dst, acc: b, point, scalar }))
                    })
                }
                _ => None,
            };
            if let Some((at, op)) = fused {
                keep[at] = false;
                ops[i] = op;
            }
        }
        let mut program = Program { ops, ..self.clone() };
        program.retain_ops(keep);
        program
    }
}

impl Op {
    /// The variables this operation writes: (first, words) of each value.
    pub fn writes(&self) -> Vec<(u32, u32)> {
        match self {
            Op::LoadScalar { dst, .. }
            | Op::Copy { dst, .. }
            | Op::Add { dst, .. }
            | Op::Sub { dst, .. }
            | Op::Mul { dst, .. }
            | Op::MulAdd { dst, .. }
            | Op::MulSub { dst, .. }
            | Op::Pow { dst, .. } => vec![(*dst, 1)],
            Op::LoadPoint { dst, .. }
            | Op::PointFromLimbs { dst, .. }
            | Op::EcAdd { dst, .. }
            | Op::EcMul { dst, .. }
            | Op::EcMulAdd { dst, .. } => {
                vec![(*dst, 2)]
            }
            Op::Squeeze { dst, hash, .. } => vec![(*dst, 1), (*hash, 1)],
            Op::BatchInvert { dsts, .. } => dsts.iter().map(|&d| (d, 1)).collect(),
            Op::Pairing { .. } | Op::AssertEq { .. } => vec![],
        }
    }

    /// Calls `read(word, words)` for each operand this operation reads.
    pub fn reads(&self, mut read: impl FnMut(Word, u32)) {
        match self {
            Op::LoadScalar { .. } | Op::LoadPoint { .. } => {}
            Op::PointFromLimbs { limbs, .. } => limbs.iter().for_each(|l| read(*l, 1)),
            Op::Copy { src, .. } => read(*src, 1),
            Op::Add { a, b, .. } | Op::Sub { a, b, .. } | Op::Mul { a, b, .. } => {
                read(*a, 1);
                read(*b, 1)
            }
            Op::MulAdd { a, b, c, .. } | Op::MulSub { a, b, c, .. } => {
                read(*a, 1);
                read(*b, 1);
                read(*c, 1)
            }
            Op::BatchInvert { srcs, .. } => srcs.iter().for_each(|s| read(*s, 1)),
            Op::Pow { base, exp, .. } => {
                read(*base, 1);
                read(*exp, 1)
            }
            Op::Squeeze { start, len, .. } => read(Word::Var(*start), *len),
            Op::EcAdd { a, b, .. } => {
                read(*a, 2);
                read(*b, 2)
            }
            Op::EcMul { point, scalar, .. } => {
                read(*point, 2);
                read(*scalar, 1)
            }
            Op::EcMulAdd { acc, point, scalar, .. } => {
                read(*acc, 2);
                read(*point, 2);
                read(*scalar, 1)
            }
            Op::Pairing { lhs, rhs, g2 } => {
                read(*lhs, 2);
                read(*rhs, 2);
                read(*g2, 8)
            }
            Op::AssertEq { a, b, words } => {
                read(*a, *words);
                read(*b, *words)
            }
        }
    }
}

/// Where each variable lives in memory: words that are hashed together (the transcript) keep
/// their order in one region; the others share words once their values are dead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The word of each variable, from the start of the variables' memory.
    pub word: Vec<u32>,
    /// Words of memory the variables take.
    pub words: u32,
}

impl Program {
    /// Lays the variables out in memory, reusing the words of dead values.
    pub fn layout(&self) -> Layout {
        self.layout_with(false)
    }

    /// [`Program::layout`], with the transcript's words after the others when `pinned_last`
    /// (the words computed on then come first: the shared verifier's 1-byte operands reach
    /// the first 256 words of memory).
    pub fn layout_with(&self, pinned_last: bool) -> Layout {
        let n = self.vars as usize;
        let mut pinned = vec![false; n];
        let mut last_use = vec![None::<usize>; n];
        for (i, op) in self.ops.iter().enumerate() {
            if let Op::Squeeze { start, len, .. } = op {
                (*start..start + len).for_each(|v| pinned[v as usize] = true);
            }
            op.reads(|word, words| {
                if let Word::Var(v) = word {
                    (v..v + words).for_each(|v| last_use[v as usize] = Some(i));
                }
            });
        }
        let pinned_words: Vec<u32> = pinned
            .iter()
            .scan(0u32, |next, &p| {
                let at = *next;
                *next += p as u32;
                Some(at)
            })
            .collect();
        let pinned_count = pinned.iter().filter(|&&p| p).count() as u32;
        let base = if pinned_last { 0 } else { pinned_count };
        let mut word = vec![u32::MAX; n];
        // Free blocks of one and two words, and the next unused word.
        let (mut free1, mut free2, mut top) = (Vec::<u32>::new(), Vec::<u32>::new(), base);
        let mut dies_at: Vec<Vec<(u32, u32)>> = vec![Vec::new(); self.ops.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for (dst, words) in op.writes() {
                if !pinned[dst as usize] {
                    let free = if words == 1 { &mut free1 } else { &mut free2 };
                    let at = free.pop().unwrap_or_else(|| {
                        top += words;
                        top - words
                    });
                    (0..words).for_each(|j| word[(dst + j) as usize] = at + j);
                    let dead = last_use[dst as usize..(dst + words) as usize].iter().flatten().max().copied();
                    dies_at[dead.unwrap_or(i)].push((at, words));
                }
            }
            for (at, words) in std::mem::take(&mut dies_at[i]) {
                if words == 1 {
                    free1.push(at)
                } else {
                    free2.push(at)
                }
            }
        }
        let pinned_at = if pinned_last { top } else { 0 };
        for v in 0..n {
            if pinned[v] {
                word[v] = pinned_at + pinned_words[v];
            }
        }
        Layout { word, words: top + if pinned_last { pinned_count } else { 0 } }
    }
}

/// The native interpreter of a program: `None` is a rejection.
struct Machine<'a> {
    program: &'a Program,
    calldata: &'a [u8],
    vars: Vec<U256>,
}

impl<'a> Machine<'a> {
    fn new(program: &'a Program, calldata: &'a [u8]) -> Self {
        Self { program, calldata, vars: vec![U256::ZERO; program.vars as usize] }
    }

    fn get(&self, word: Word, i: u32) -> U256 {
        match word {
            Word::Const(c) => self.program.constants[(c + i) as usize],
            Word::Var(v) => self.vars[(v + i) as usize],
        }
    }

    fn scalar(&self, word: Word) -> Option<Fr> {
        Option::from(Fr::from_repr(self.get(word, 0).to_le_bytes()))
    }

    fn point(&self, word: Word) -> Option<G1Affine> {
        point_of(self.get(word, 0), self.get(word, 1))
    }

    fn set_scalar(&mut self, dst: u32, value: Fr) {
        self.vars[dst as usize] = fr_word(&value);
    }

    fn set_point(&mut self, dst: u32, point: G1Affine) {
        let [x, y] = point_words(&point);
        self.vars[dst as usize] = x;
        self.vars[dst as usize + 1] = y;
    }

    fn calldata_word(&self, offset: u32) -> U256 {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = self.calldata.get(offset as usize + i).copied().unwrap_or(0);
        }
        U256::from_be_bytes(bytes)
    }

    /// scalar · point as the ecMul precompile computes it: by the whole word (points have
    /// order r).
    fn times(&self, point: Word, scalar: Word) -> Option<G1> {
        let s = Fr::from_repr((self.get(scalar, 0) % scalar_modulus()).to_le_bytes());
        Some(self.point(point)? * Option::<Fr>::from(s)?)
    }

    fn run(mut self) -> Option<()> {
        let r = scalar_modulus();
        for op in &self.program.ops {
            match op {
                Op::LoadScalar { dst, offset } => {
                    let word = self.calldata_word(*offset);
                    (word < r).then_some(())?;
                    self.vars[*dst as usize] = word;
                }
                Op::LoadPoint { dst, offset } => {
                    let (x, y) = (self.calldata_word(*offset), self.calldata_word(offset + 0x20));
                    let point = affine_point(x, y)?;
                    self.set_point(*dst, point);
                }
                Op::PointFromLimbs { dst, limbs, bits } => {
                    let half = limbs.len() / 2;
                    let join = |limbs: &[Word]| -> Option<U256> {
                        let mut acc = U256::ZERO;
                        for (i, limb) in limbs.iter().enumerate() {
                            let shift = i as u32 * bits;
                            let width = (*bits).min(256u32.saturating_sub(shift));
                            let value = self.get(*limb, 0);
                            (value < (U256::from(1) << width as usize)).then_some(())?;
                            acc += value << shift as usize;
                        }
                        Some(acc)
                    };
                    let (x, y) = (join(&limbs[..half])?, join(&limbs[half..])?);
                    self.set_point(*dst, affine_point(x, y)?);
                }
                Op::Copy { dst, src } => self.vars[*dst as usize] = self.get(*src, 0),
                Op::Add { dst, a, b } => {
                    let v = self.scalar(*a)? + self.scalar(*b)?;
                    self.set_scalar(*dst, v)
                }
                Op::Sub { dst, a, b } => {
                    let v = self.scalar(*a)? - self.scalar(*b)?;
                    self.set_scalar(*dst, v)
                }
                Op::Mul { dst, a, b } => {
                    let v = self.scalar(*a)? * self.scalar(*b)?;
                    self.set_scalar(*dst, v)
                }
                Op::MulAdd { dst, a, b, c } => {
                    let v = self.scalar(*a)? * self.scalar(*b)? + self.scalar(*c)?;
                    self.set_scalar(*dst, v)
                }
                Op::MulSub { dst, a, b, c } => {
                    let v = self.scalar(*c)? - self.scalar(*a)? * self.scalar(*b)?;
                    self.set_scalar(*dst, v)
                }
                Op::BatchInvert { dsts, srcs } => {
                    let srcs = srcs.iter().map(|s| self.scalar(*s)).collect::<Option<Vec<Fr>>>()?;
                    let products: Vec<Fr> = srcs
                        .iter()
                        .scan(Fr::ONE, |p, s| {
                            *p *= s;
                            Some(*p)
                        })
                        .collect();
                    let mut inverse = products.last()?.pow_vartime((scalar_modulus() - U256::from(2)).as_limbs());
                    for i in (0..srcs.len()).rev() {
                        let before = if i == 0 { Fr::ONE } else { products[i - 1] };
                        self.set_scalar(dsts[i], before * inverse);
                        inverse *= srcs[i];
                    }
                }
                Op::Pow { dst, base, exp } => {
                    let v = self.scalar(*base)?.pow_vartime(self.get(*exp, 0).as_limbs());
                    self.set_scalar(*dst, v)
                }
                Op::Squeeze { dst, hash, start, len } => {
                    let mut bytes: Vec<u8> =
                        (0..*len).flat_map(|i| self.vars[(start + i) as usize].to_be_bytes::<32>()).collect();
                    if *len == 1 {
                        bytes.push(1);
                    }
                    let h = U256::from_be_bytes(keccak256(&bytes).0);
                    self.vars[*hash as usize] = h;
                    self.vars[*dst as usize] = h % r;
                }
                Op::EcAdd { dst, a, b } => {
                    let sum: G1 = self.point(*a)? + self.point(*b)?;
                    self.set_point(*dst, sum.into())
                }
                Op::EcMul { dst, point, scalar } => {
                    let product = self.times(*point, *scalar)?;
                    self.set_point(*dst, product.into())
                }
                Op::EcMulAdd { dst, acc, point, scalar } => {
                    let sum: G1 = self.times(*point, *scalar)? + self.point(*acc)?;
                    self.set_point(*dst, sum.into())
                }
                Op::Pairing { lhs, rhs, g2 } => {
                    let g2_point = |i: u32| g2_of([0, 1, 2, 3].map(|j| self.get(*g2, i + j)));
                    let (g2, minus_s_g2) = (g2_point(0)?, g2_point(4)?);
                    let (lhs, rhs) = (self.point(*lhs)?, self.point(*rhs)?);
                    let terms = [(&lhs, &G2Prepared::from(g2)), (&rhs, &G2Prepared::from(minus_s_g2))];
                    let gt = Bn256::multi_miller_loop(&terms).final_exponentiation();
                    (gt == Gt::identity()).then_some(())?;
                }
                Op::AssertEq { a, b, words } => {
                    ((0..*words).all(|i| self.get(*a, i) == self.get(*b, i))).then_some(())?;
                }
            }
        }
        Some(())
    }
}

/// A point as the precompiles read it: (0, 0) is the point at infinity, anything else must be
/// on the curve with coordinates below q.
fn point_of(x: U256, y: U256) -> Option<G1Affine> {
    if x.is_zero() && y.is_zero() {
        return Some(G1Affine::identity());
    }
    affine_point(x, y)
}

/// A point on the curve's affine plane (not the point at infinity).
fn affine_point(x: U256, y: U256) -> Option<G1Affine> {
    let x: Fq = Option::from(Fq::from_repr(x.to_le_bytes()))?;
    let y: Fq = Option::from(Fq::from_repr(y.to_le_bytes()))?;
    Option::from(G1Affine::from_xy(x, y))
}

fn g2_of(words: [U256; 4]) -> Option<G2Affine> {
    use halo2_base::halo2_proofs::halo2curves::bn256::Fq2;
    let fq = |w: U256| Option::<Fq>::from(Fq::from_repr(w.to_le_bytes()));
    let x = Fq2 { c0: fq(words[1])?, c1: fq(words[0])? };
    let y = Fq2 { c0: fq(words[3])?, c1: fq(words[2])? };
    Option::from(G2Affine::from_xy(x, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_inversion_inverts_each_value() {
        let tracer = Tracer::default();
        let mut values: Vec<TracedScalar> = (0..3).map(|_| tracer.read_scalar()).collect();
        let originals = values.clone();
        Tracer::batch_invert(values.iter_mut());
        // (v · 2) · o = 2: not v · o, the product the inversion computes last (and drops).
        let two = tracer.load_const(&Fr::from(2));
        for (v, o) in values.iter().zip(&originals) {
            let product = v.clone() * &two * o;
            tracer.assert_eq("inverse", &product, &two);
        }
        let program = tracer.finish();
        assert_eq!(program.count(|op| matches!(op, Op::Pow { .. })), 1, "one inversion for all");
        let calldata: Vec<u8> = [3u64, 5, 7].iter().flat_map(|v| fr_word(&Fr::from(*v)).to_be_bytes::<32>()).collect();
        assert!(program.accepts(&calldata));
        let mut zero = calldata.clone();
        zero[31] = 0;
        assert!(!program.accepts(&zero), "zero has no inverse");
        // Fused: one operation computes the same inverses.
        let fused = program.fused();
        assert_eq!(fused.count(|op| matches!(op, Op::BatchInvert { .. })), 1, "{:?}", fused.ops);
        assert_eq!(fused.count(|op| matches!(op, Op::Pow { .. } | Op::Mul { .. })), 6, "the checks' products only");
        assert!(fused.accepts(&calldata));
        assert!(!fused.accepts(&zero), "zero has no inverse when fused");
    }

    #[test]
    fn a_batch_inversion_whose_products_are_read_later_stays_as_traced() {
        let tracer = Tracer::default();
        let mut values: Vec<TracedScalar> = (0..2).map(|_| tracer.read_scalar()).collect();
        let originals = values.clone();
        Tracer::batch_invert(values.iter_mut());
        // v0 · v1 is the inversion's prefix product: the tracer hands that variable out again.
        let product = originals[0].clone() * &originals[1];
        tracer.assert_eq("product", &product, &tracer.load_const(&Fr::from(15)));
        tracer.assert_eq("inverse", &(values[0].clone() * &originals[0]), &tracer.load_one());
        let program = tracer.finish();
        let fused = program.fused();
        assert_eq!(fused.count(|op| matches!(op, Op::BatchInvert { .. })), 0, "{:?}", fused.ops);
        assert!(fused.accepts(&calldata_of(&[3, 5])) && program.accepts(&calldata_of(&[3, 5])));
        assert!(!fused.accepts(&calldata_of(&[3, 6])) && !program.accepts(&calldata_of(&[3, 6])));
    }

    #[test]
    fn a_product_read_once_is_fused_into_its_sum_and_one_read_twice_is_not() {
        let tracer = Tracer::default();
        let (a, b, c, d) = (tracer.read_scalar(), tracer.read_scalar(), tracer.read_scalar(), tracer.read_scalar());
        let constant = |v: u64| tracer.load_const(&Fr::from(v));
        let sum = a.clone() * &b + &c; // 3·5 + 7
        let difference = d.clone() - a.clone() * &c; // 11 − 3·7
        let shared = b.clone() * &d; // read twice: stays a product
        tracer.assert_eq("sum", &sum, &constant(22));
        tracer.assert_eq("difference", &(difference + constant(10)), &constant(0));
        tracer.assert_eq("shared", &(shared.clone() + &shared), &constant(110));
        let program = tracer.finish();
        let fused = program.fused();
        assert_eq!(fused.count(|op| matches!(op, Op::MulAdd { .. })), 1, "{:?}", fused.ops);
        assert_eq!(fused.count(|op| matches!(op, Op::MulSub { .. })), 1, "{:?}", fused.ops);
        assert_eq!(fused.count(|op| matches!(op, Op::Mul { .. })), 1, "{:?}", fused.ops);
        for values in [[3, 5, 7, 11], [3, 5, 7, 12], [4, 5, 7, 11], [3, 5, 8, 11]] {
            let calldata = calldata_of(&values);
            assert_eq!(fused.accepts(&calldata), program.accepts(&calldata), "{values:?}");
        }
        assert!(fused.accepts(&calldata_of(&[3, 5, 7, 11])));
    }

    fn calldata_of(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| fr_word(&Fr::from(*v)).to_be_bytes::<32>()).collect()
    }

    #[test]
    fn a_value_computed_twice_is_computed_once() {
        let tracer = Tracer::default();
        let (a, b) = (tracer.read_scalar(), tracer.read_scalar());
        let first = a.clone() * &b;
        let again = b.clone() * &a;
        assert_eq!(first, again, "multiplication commutes: the same variable");
        let square = (a.clone() + &b) * (a.clone() + &b);
        let expected = tracer.load_const(&Fr::from(64));
        tracer.assert_eq("square", &square, &expected);
        let program = tracer.finish();
        assert_eq!(program.count(|op| matches!(op, Op::Add { .. })), 1, "a + b once");
        assert_eq!(program.count(|op| matches!(op, Op::Mul { .. })), 1, "the unused a·b is dropped; one square");
        assert!(program.accepts(&calldata_of(&[3, 5])));
        assert!(!program.accepts(&calldata_of(&[3, 6])));
    }

    #[test]
    fn a_negation_is_folded_into_the_sum_that_uses_it() {
        let tracer = Tracer::default();
        let (a, x) = (tracer.read_scalar(), tracer.read_scalar());
        let difference = a.clone() + (-x.clone());
        let back = difference.clone() - (-x.clone());
        let scaled = (-x.clone()) * tracer.load_const(&Fr::from(3));
        let constant = |v: u64| tracer.load_const(&Fr::from(v));
        tracer.assert_eq("difference", &difference, &constant(3));
        tracer.assert_eq("back", &back, &constant(10));
        tracer.assert_eq("scaled", &(scaled + constant(42)), &constant(21));
        let program = tracer.finish();
        let subtractions = program.count(|op| matches!(op, Op::Sub { a: Word::Const(_), .. }));
        assert_eq!(subtractions, 0, "no 0 − x left: {:?}", program.ops);
        assert!(program.accepts(&calldata_of(&[10, 7])));
        assert!(!program.accepts(&calldata_of(&[10, 8])));
    }

    #[test]
    fn dead_computations_go_and_every_check_stays() {
        let tracer = Tracer::default();
        let (a, b) = (tracer.read_scalar(), tracer.read_scalar());
        let _unused = a.clone() * &b + &a;
        let point = tracer.read_point();
        let _unused_point = tracer.ec_mul(&point.value, &a.value);
        let program = tracer.finish();
        assert_eq!(program.ops.len(), 3, "the two reads of scalars and the point's: {:?}", program.ops);
        let mut calldata = calldata_of(&[1, 2]);
        calldata.extend(point_words(&G1Affine::generator()).iter().flat_map(|w| w.to_be_bytes::<32>()));
        assert!(program.accepts(&calldata));
        let last = calldata.len() - 1;
        calldata[last] ^= 1;
        assert!(!program.accepts(&calldata), "the point is still checked");
    }
}
