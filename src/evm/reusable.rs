//! The reusable verifier: one contract per chain (`contracts/Halo2SharedVerifier.sol`) runs the
//! verification program of any key, and each key is a data contract holding its constants and
//! its program in a compact encoding (see the contract's header for the layout). The program is
//! the one the direct verifier of the key runs ([`super::program`]), so both decide alike.

use std::path::Path;

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::halo2curves::ff::PrimeField;

use super::chain::{no_custom_errors, Chain, EvmVerification};
use super::program::{Op, Program, Word};
use super::solidity::{compile_sources, CompiledContract, Optimizer, MAX_RUNTIME_BYTES};
use crate::error::{Error, EvmError, Result};

alloy::sol! {
    /// The shared verifier's entry point.
    function verifyProof(address vk, uint256[] instances, bytes proof) external view returns (bool);
    /// The key encoding it reads.
    function keyEncoding() external pure returns (bytes4);
}

/// The shared verifier's source.
pub const SHARED_VERIFIER_SOURCE: &str = include_str!("../../contracts/Halo2SharedVerifier.sol");
/// Its contract name.
pub const SHARED_VERIFIER_CONTRACT: &str = "Halo2SharedVerifier";
/// The name `create-evm-verifier --reusable` gives a key's data contract in its artifact.
pub const KEY_CONTRACT: &str = "VerifyingKey";
/// The first bytes of a key's data: the encoding's version. A shared verifier refuses keys of
/// any other.
pub const MAGIC: &[u8; 4] = b"ZKV3";
/// Bytes of the data's header (magic, counts) after the leading STOP byte.
const HEADER: usize = 23;
/// Where the header says how many more data contracts (parts) the key takes.
const PARTS_AT: usize = 1 + 22;
/// Words a 1-byte operand names.
const NEAR: u32 = 256;

/// Operation codes, as the shared verifier dispatches them (its `switch` compares them in the
/// order of their frequency in the programs zkinfer generates, not of their codes).
mod code {
    pub(super) const END: u8 = 0;
    pub(super) const MUL: u8 = 1;
    pub(super) const MULS: u8 = 2;
    pub(super) const MUL_ADD: u8 = 3;
    pub(super) const MUL_SUB: u8 = 4;
    pub(super) const SUB: u8 = 5;
    pub(super) const ADD: u8 = 6;
    pub(super) const EC_MUL_ADD: u8 = 7;
    pub(super) const SQUEEZE: u8 = 8;
    pub(super) const SCALARS: u8 = 9;
    pub(super) const POINTS: u8 = 10;
    pub(super) const COPY: u8 = 11;
    pub(super) const BATCH_INVERT: u8 = 12;
    pub(super) const POW: u8 = 13;
    pub(super) const EC_ADD: u8 = 14;
    pub(super) const EC_MUL: u8 = 15;
    pub(super) const LIMBS: u8 = 16;
    pub(super) const PAIRING_G: u8 = 17;
    pub(super) const PAIRING: u8 = 18;
    pub(super) const ASSERT_EQ: u8 = 19;
    pub(super) const EC_MUL_ADD_FAR: u8 = 20;
    pub(super) const WIDE: u8 = 21;
    pub(super) const EC_MSM: u8 = 22;
    pub(super) const SQUARINGS: u8 = 23;
}

/// The words of BN254's G2 generator as the pairing precompile reads them: the shared verifier
/// holds them, so a key whose SRS has this G2 (every KZG setup does) leaves them out.
fn g2_generator() -> [U256; 4] {
    super::program::g2_words(&halo2_base::halo2_proofs::halo2curves::bn256::G2Affine::generator())
}

/// Whether the pairing's eight G2 words at `g2` start with the generator.
fn implies_generator(program: &Program, g2: Word) -> bool {
    matches!(g2, Word::Const(c) if program.constants.get(c as usize..c as usize + 4) == Some(&g2_generator()[..]))
}

/// What an operation reads from memory as the shared verifier runs it: as [`Op::reads`], but
/// a pairing with the generator implied reads only −s·G2.
fn key_reads(program: &Program, op: &Op, mut read: impl FnMut(Word, u32)) {
    match op {
        Op::Pairing { lhs, rhs, g2: Word::Const(c) } if implies_generator(program, Word::Const(*c)) => {
            read(*lhs, 2);
            read(*rhs, 2);
            read(Word::Const(c + 4), 4)
        }
        _ => op.reads(read),
    }
}

/// Where a key's words live in the shared verifier's memory. Field arithmetic names words with
/// 1-byte operands, which reach the first 256 words (beyond, it takes 2-byte ones): the pieces
/// of memory it uses most per word come first. The pieces: the variables computed on (laid out
/// reusing dead words), the constants arithmetic reads (one block), and each run of words a
/// challenge hashes (contiguous, in order, but each anywhere). The other constants (points, G2)
/// come last.
struct Memory {
    /// The word of each variable.
    var: Vec<u32>,
    /// The word of each constant.
    constant: Vec<u32>,
    /// The constants in the order of the key's data: the near ones, then the others.
    order: Vec<usize>,
    /// How many are near, and their first word.
    near: usize,
    near_at: u32,
    /// Words in all.
    words: u32,
}

impl Memory {
    fn of(program: &Program) -> Memory {
        let layout = program.layout_with(true);
        // The constants: used at all, read by arithmetic (and never as part of a point).
        let mut arithmetic = vec![false; program.constants.len()];
        let mut block = vec![false; program.constants.len()];
        let mut used = vec![false; program.constants.len()];
        for op in &program.ops {
            let near = Self::near(op);
            key_reads(program, op, |word, words| {
                if let Word::Const(c) = word {
                    let range = c as usize..(c + words) as usize;
                    used[range.clone()].iter_mut().for_each(|u| *u = true);
                    if words > 1 {
                        block[range].iter_mut().for_each(|b| *b = true);
                    } else if near {
                        arithmetic[c as usize] = true;
                    }
                }
            });
        }
        // Constants nothing reads (the G2 generator's words, say) are left out.
        let is_near = |c: &usize| arithmetic[*c] && !block[*c];
        let (near, far): (Vec<usize>, Vec<usize>) =
            (0..program.constants.len()).filter(|&c| used[c]).partition(is_near);

        // The pieces of the variables' memory: the transcript's runs, then what is left (the
        // variables computed on, first in `layout`).
        let mut piece_of = vec![usize::MAX; program.vars as usize];
        let mut pieces: Vec<(u32, u32)> = Vec::new(); // (first variable, words)
        let mut overlap = false;
        for op in &program.ops {
            if let Op::Squeeze { start, len, .. } = op {
                overlap |= (*start..start + len).any(|v| piece_of[v as usize] != usize::MAX);
                (*start..start + len).for_each(|v| piece_of[v as usize] = pieces.len());
                pieces.push((*start, *len));
            }
        }
        if overlap {
            // Runs that overlap stay where the layout put them: all one piece.
            pieces.clear();
            piece_of.iter_mut().for_each(|p| *p = usize::MAX);
        }
        let temps = layout.words - pieces.iter().map(|p| p.1).sum::<u32>();
        // Uses by arithmetic, per piece: [temps, constants, runs...].
        let mut uses = vec![0u64; 2 + pieces.len()];
        for op in program.ops.iter().filter(|op| Self::near(op)) {
            let mut count = |word: Word| match word {
                Word::Const(_) => uses[1] += 1,
                Word::Var(v) => match piece_of[v as usize] {
                    usize::MAX => uses[0] += 1,
                    p => uses[2 + p] += 1,
                },
            };
            op.reads(|word, _| count(word));
            op.writes().iter().for_each(|&(v, _)| count(Word::Var(v)));
        }
        let sizes: Vec<u32> = [temps, near.len() as u32].into_iter().chain(pieces.iter().map(|p| p.1)).collect();
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        // Densest first (uses per word); ties keep this order.
        order.sort_by(|&a, &b| {
            (uses[b] * sizes[a].max(1) as u64).cmp(&(uses[a] * sizes[b].max(1) as u64)).then(a.cmp(&b))
        });
        let mut base = vec![0u32; sizes.len()];
        let mut at = 0;
        for i in order {
            base[i] = at;
            at += sizes[i];
        }
        let mut var = vec![0u32; program.vars as usize];
        for v in 0..program.vars as usize {
            var[v] = match piece_of[v] {
                usize::MAX => base[0].saturating_add(layout.word[v]),
                p => base[2 + p] + (v as u32 - pieces[p].0),
            };
        }
        let near_at = base[1];
        let mut constant = vec![0; program.constants.len()];
        for (i, &c) in near.iter().enumerate() {
            constant[c] = near_at + i as u32;
        }
        for (i, &c) in far.iter().enumerate() {
            constant[c] = at + i as u32;
        }
        let words = at + far.len() as u32;
        Memory { var, constant, near: near.len(), near_at, order: near.into_iter().chain(far).collect(), words }
    }

    /// Field arithmetic, whose operands are 1-byte word indices.
    fn near(op: &Op) -> bool {
        matches!(
            op,
            Op::Mul { .. }
                | Op::MulAdd { .. }
                | Op::MulSub { .. }
                | Op::Add { .. }
                | Op::Sub { .. }
                | Op::BatchInvert { .. }
        )
    }

    fn word(&self, word: Word) -> u32 {
        match word {
            Word::Const(c) => self.constant[c as usize],
            Word::Var(v) => self.var[v as usize],
        }
    }

    /// A batch inversion's operands as 1-byte word indices (sources, then results), or `None`
    /// when any is beyond their reach or there are over 255 values.
    fn inversion_operands(&self, dsts: &[u32], srcs: &[Word]) -> Option<(Vec<u8>, Vec<u8>)> {
        let near = |w: Word| u8::try_from(self.word(w)).ok();
        u8::try_from(dsts.len()).ok()?;
        let srcs = srcs.iter().map(|&s| near(s)).collect::<Option<Vec<u8>>>()?;
        let dsts = dsts.iter().map(|&d| near(Word::Var(d))).collect::<Option<Vec<u8>>>()?;
        Some((srcs, dsts))
    }
}

struct Encoder<'a> {
    program: &'a Program,
    memory: Memory,
    /// How many operations read each variable.
    readers: Vec<u32>,
    out: Vec<u8>,
    /// The open run of products: where its `MUL` is (one product) or its `MULS` count is, and
    /// the count.
    muls: Option<(usize, u8)>,
    /// The open run of field arithmetic with 2-byte operands: where its count is, and the count.
    wides: Option<(usize, u8)>,
}

impl Encoder<'_> {
    fn word(&self, word: Word) -> u32 {
        self.memory.word(word)
    }

    /// The byte offset of an operand, for the operations with 2-byte operands.
    fn offset(&self, word: Word) -> Result<u16> {
        u16::try_from(self.word(word) * 32).map_err(|_| too_large("its memory is over 64 KiB"))
    }

    fn var(&self, v: u32) -> Result<u16> {
        self.offset(Word::Var(v))
    }

    fn emit(&mut self, code: u8, operands: &[u16]) {
        self.muls = None;
        self.wides = None;
        self.out.push(code);
        for o in operands {
            self.out.extend(o.to_be_bytes());
        }
    }

    fn input(offset: u32) -> Result<u16> {
        u16::try_from(offset).map_err(|_| too_large("its instances and proof are over 64 KiB"))
    }

    /// Field arithmetic: `code`, `dst`, then `sources`, as 1-byte word indices; when any word
    /// is beyond the first 256, the `WIDE` form of the same operation with 2-byte byte offsets.
    fn arith(&mut self, code: u8, dst: u32, sources: &[Word]) -> Result<()> {
        let words: Vec<Word> = std::iter::once(Word::Var(dst)).chain(sources.iter().copied()).collect();
        if words.iter().any(|&w| self.word(w) >= NEAR) {
            // Beyond 1-byte operands' reach: the same operation with 2-byte byte offsets, in a
            // run of such operations (`WIDE`, their count, then each): one dispatch for all.
            let offsets = words.iter().map(|&w| self.offset(w)).collect::<Result<Vec<u16>>>()?;
            match self.wides {
                Some((at, n)) if n < u8::MAX => {
                    self.out[at] = n + 1;
                    self.wides = Some((at, n + 1));
                }
                _ => {
                    self.emit(code::WIDE, &[]);
                    self.out.push(1);
                    self.wides = Some((self.out.len() - 1, 1));
                }
            }
            self.out.push(code);
            offsets.iter().for_each(|o| self.out.extend(o.to_be_bytes()));
            return Ok(());
        }
        self.wides = None;
        let near: Vec<u8> = words.iter().map(|&w| self.word(w) as u8).collect();
        if code == code::MUL {
            // A product right after another is appended to a run (`MULS`): one dispatch for
            // all; the first of a run is a `MUL` until a second one follows.
            match self.muls {
                Some((at, 1)) => {
                    self.out[at] = code::MULS;
                    self.out.insert(at + 1, 2);
                    self.muls = Some((at + 1, 2));
                }
                Some((at, n)) if n < u8::MAX => {
                    self.out[at] = n + 1;
                    self.muls = Some((at, n + 1));
                }
                _ => {
                    self.out.push(code::MUL);
                    self.muls = Some((self.out.len() - 1, 1));
                }
            }
            self.out.extend(near);
        } else {
            self.muls = None;
            self.out.push(code);
            self.out.extend(near);
        }
        Ok(())
    }

    /// `n` words from byte `from` to byte `to`.
    fn copy(&mut self, to: u16, from: u16, n: u8) {
        self.emit(code::COPY, &[to, from]);
        self.out.push(n);
    }

    /// Encodes the copies from op `i` on as one operation where they copy consecutive words to
    /// consecutive words (the instances into the transcript, say). Returns how many it covered.
    fn copies(&mut self, i: usize) -> Result<Option<usize>> {
        let ops = &self.program.ops;
        let copy = |op: &Op| match op {
            Op::Copy { dst, src } => Some((Word::Var(*dst), *src)),
            _ => None,
        };
        let Some((dst, src)) = copy(&ops[i]) else { return Ok(None) };
        let (to, from) = (self.word(dst), self.word(src));
        let mut n = 1;
        while let Some((d, s)) = ops.get(i + n).and_then(copy) {
            if self.word(d) != to + n as u32 || self.word(s) != from + n as u32 || n == u8::MAX as usize {
                break;
            }
            n += 1;
        }
        self.copy(self.offset(dst)?, self.offset(src)?, n as u8);
        Ok(Some(n))
    }

    /// Encodes a chain of ecMul-adds from op `i` on, each adding into the sum of the one before
    /// (which nothing else reads), as one multi-scalar multiplication: the sum stays in the
    /// scratch area and only the last is stored. Returns how many it covered.
    fn msm(&mut self, i: usize) -> Result<Option<usize>> {
        let ops = &self.program.ops;
        let Op::EcMulAdd { acc, .. } = ops[i] else { return Ok(None) };
        let mut pairs = Vec::new();
        let mut last: Option<u32> = None;
        while let Some(Op::EcMulAdd { dst, acc: from, point, scalar }) = ops.get(i + pairs.len()) {
            // Both words of the sum (a point) read by this operation only.
            let once = |sum: u32| (sum..sum + 2).all(|w| self.readers.get(w as usize) == Some(&1));
            let chained = last.is_none_or(|sum| *from == Word::Var(sum) && once(sum));
            if !chained || pairs.len() == u8::MAX as usize {
                break;
            }
            pairs.push((self.offset(*point)?, self.offset(*scalar)?));
            last = Some(*dst);
        }
        let Some(dst) = last.filter(|_| pairs.len() > 1) else { return Ok(None) };
        self.emit(code::EC_MSM, &[]);
        self.out.push(pairs.len() as u8);
        for o in [self.var(dst)?, self.offset(acc)?].into_iter().chain(pairs.iter().flat_map(|&(p, s)| [p, s])) {
            self.out.extend(o.to_be_bytes());
        }
        Ok(Some(pairs.len()))
    }

    /// Encodes repeated squarings from op `i` on (each squaring the one before, which nothing
    /// else reads: x^(2^n), the vanishing polynomial's power) as one operation. Returns how many
    /// it covered.
    fn squarings(&mut self, i: usize) -> Result<Option<usize>> {
        let ops = &self.program.ops;
        let Op::Mul { a: base, b, .. } = ops[i] else { return Ok(None) };
        if base != b {
            return Ok(None);
        }
        let mut last: Option<u32> = None;
        let mut n = 0;
        while let Some(Op::Mul { dst, a, b }) = ops.get(i + n) {
            let chained = last.is_none_or(|x| *a == Word::Var(x) && self.readers[x as usize] == 2);
            if a != b || !chained || n == u8::MAX as usize {
                break;
            }
            last = Some(*dst);
            n += 1;
        }
        let Some(dst) = last.filter(|_| n >= 3) else { return Ok(None) };
        self.emit(code::SQUARINGS, &[]);
        self.out.push(n as u8);
        for o in [self.var(dst)?, self.offset(base)?] {
            self.out.extend(o.to_be_bytes());
        }
        Ok(Some(n))
    }

    /// Encodes the calldata reads from op `i` on as one operation: a run of scalars (or
    /// points) read from consecutive input into consecutive memory. Returns how many it covered.
    fn reads(&mut self, i: usize) -> Result<Option<usize>> {
        let ops = &self.program.ops;
        let read = |op: &Op| match op {
            Op::LoadScalar { dst, offset } => Some((*dst, *offset, 0x20u32, code::SCALARS)),
            Op::LoadPoint { dst, offset } => Some((*dst, *offset, 0x40u32, code::POINTS)),
            _ => None,
        };
        let Some((dst, offset, size, op)) = read(&ops[i]) else { return Ok(None) };
        let start = self.var(dst)? as u32;
        let mut n = 1;
        while let Some((d, o, s, _)) = ops.get(i + n).and_then(read) {
            let next = n as u32 * size;
            if s != size || o != offset + next || self.var(d)? as u32 != start + next || n == u16::MAX as usize {
                break;
            }
            n += 1;
        }
        self.emit(op, &[start as u16, Self::input(offset)?, n as u16]);
        Ok(Some(n))
    }

    fn op(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::LoadScalar { .. } | Op::LoadPoint { .. } => unreachable!("encoded as runs"),
            Op::Mul { dst, a, b } => self.arith(code::MUL, *dst, &[*a, *b])?,
            Op::MulAdd { dst, a, b, c } => self.arith(code::MUL_ADD, *dst, &[*a, *b, *c])?,
            Op::Add { dst, a, b } => self.arith(code::ADD, *dst, &[*a, *b])?,
            Op::Sub { dst, a, b } => self.arith(code::SUB, *dst, &[*a, *b])?,
            Op::MulSub { dst, a, b, c } => self.arith(code::MUL_SUB, *dst, &[*a, *b, *c])?,
            Op::Copy { .. } => unreachable!("encoded as runs"),
            Op::EcAdd { dst, a, b } => self.emit(code::EC_ADD, &[self.var(*dst)?, self.offset(*a)?, self.offset(*b)?]),
            Op::EcMul { dst, point, scalar } => {
                self.emit(code::EC_MUL, &[self.var(*dst)?, self.offset(*point)?, self.offset(*scalar)?])
            }
            Op::EcMulAdd { dst, acc, point, scalar } => {
                let words = [Word::Var(*dst), *acc, *point];
                let near = words.iter().all(|&w| self.word(w) + 1 < NEAR) && self.word(*scalar) < NEAR;
                if near {
                    self.emit(code::EC_MUL_ADD, &[]);
                    self.out.extend([Word::Var(*dst), *acc, *point, *scalar].map(|w| self.word(w) as u8));
                } else {
                    let operands = [self.var(*dst)?, self.offset(*acc)?, self.offset(*point)?, self.offset(*scalar)?];
                    self.emit(code::EC_MUL_ADD_FAR, &operands)
                }
            }
            Op::BatchInvert { dsts, srcs } => {
                // encode_key fuses batch inversions only where this holds.
                let Some((srcs, dsts)) = self.memory.inversion_operands(dsts, srcs) else {
                    return Err(EvmError::Generate("a batch inversion beyond 1-byte operands".into()).into());
                };
                self.emit(code::BATCH_INVERT, &[]);
                self.out.push(dsts.len() as u8);
                self.out.extend(srcs.into_iter().zip(dsts).flat_map(|(s, d)| [s, d]));
            }
            Op::Pow { dst, base, exp } => {
                self.emit(code::POW, &[self.var(*dst)?, self.offset(*base)?, self.offset(*exp)?])
            }
            Op::Squeeze { dst, hash, start, len } => {
                let len = u16::try_from(*len).map_err(|_| too_large("a challenge hashes over 65,535 words"))?;
                self.emit(code::SQUEEZE, &[self.var(*dst)?, self.var(*start)?, len, self.var(*hash)?])
            }
            Op::PointFromLimbs { dst, limbs, bits } => {
                let n = limbs.len() / 2;
                let (bits, n8) = (u8::try_from(*bits), u8::try_from(n));
                let (Ok(bits), Ok(n8)) = (bits, n8) else { return Err(too_large("an accumulator has too many limbs")) };
                let dst = self.var(*dst)?;
                self.emit(code::LIMBS, &[dst]);
                self.out.extend([bits, n8]);
                for limb in limbs {
                    let o = self.offset(*limb)?;
                    self.out.extend(o.to_be_bytes());
                }
            }
            Op::Pairing { lhs, rhs, g2: Word::Const(c) } if implies_generator(self.program, Word::Const(*c)) => {
                let minus_s_g2 = self.offset(Word::Const(c + 4))?;
                self.emit(code::PAIRING_G, &[self.offset(*lhs)?, self.offset(*rhs)?, minus_s_g2])
            }
            Op::Pairing { lhs, rhs, g2 } => {
                self.emit(code::PAIRING, &[self.offset(*lhs)?, self.offset(*rhs)?, self.offset(*g2)?])
            }
            Op::AssertEq { a, b, words } => {
                let (a, b) = (self.offset(*a)?, self.offset(*b)?);
                self.emit(code::ASSERT_EQ, &[a, b]);
                self.out.push(u8::try_from(*words).map_err(|_| too_large("an equality spans over 255 words"))?);
            }
        }
        Ok(())
    }
}

fn too_large(why: &str) -> crate::Error {
    EvmError::Generate(format!("the key is too large for the reusable verifier: {why}")).into()
}

/// A key's data as the shared verifier reads it: the STOP byte, the header, the constants, the
/// program (the verification's operations, fused: [`Program::fused`]).
pub fn encode_key(program: &Program) -> Result<Vec<u8>> {
    // A batch inversion is one operation when its words are within 1-byte operands' reach.
    let inverting = program.fused();
    let memory = Memory::of(&inverting);
    let all_near = inverting.ops.iter().all(|op| match op {
        Op::BatchInvert { dsts, srcs } => memory.inversion_operands(dsts, srcs).is_some(),
        _ => true,
    });
    let (program, memory) = match all_near {
        true => (inverting, memory),
        false => {
            let fused = program.fused_with(false);
            let memory = Memory::of(&fused);
            (fused, memory)
        }
    };
    let program = &program;
    let words = memory.words as usize;
    let readers = program.readers();
    let mut encoder = Encoder { program, memory, readers, out: Vec::new(), muls: None, wides: None };
    let mut i = 0;
    while i < program.ops.len() {
        // A run of ops encoded as one operation, from op i on (how many it covered).
        let mut run = None;
        for encode in [Encoder::reads, Encoder::copies, Encoder::msm, Encoder::squarings] {
            run = encode(&mut encoder, i)?;
            if run.is_some() {
                break;
            }
        }
        match run {
            Some(n) => i += n,
            None => {
                encoder.op(&program.ops[i])?;
                i += 1;
            }
        }
    }
    encoder.out.push(code::END);
    let body = std::mem::take(&mut encoder.out);
    let field = |v: usize, what: &str| u16::try_from(v).map_err(|_| too_large(what));
    let mut data = vec![0x00];
    data.extend(MAGIC);
    data.extend(field(program.num_instances as usize, "over 65,535 instances")?.to_be_bytes());
    data.extend((program.calldata_len - 32 * program.num_instances).to_be_bytes());
    // The memory words must stay addressable by 2-byte offsets, the scratch area included.
    field(words * 32 + 0x180, "its memory is over 64 KiB")?;
    data.extend(field(words, "its memory is over 64 KiB")?.to_be_bytes());
    data.extend(field(encoder.memory.order.len(), "over 65,535 constants")?.to_be_bytes());
    data.extend((encoder.memory.near as u16).to_be_bytes());
    data.extend(field(encoder.memory.near_at as usize, "its memory is over 64 KiB")?.to_be_bytes());
    data.extend((body.len() as u32).to_be_bytes());
    let payload = 32 * encoder.memory.order.len() + body.len();
    let parts =
        parts_for(payload, MAX_RUNTIME_BYTES).ok_or_else(|| too_large("its data would take over 255 contracts"))?;
    data.push(parts);
    debug_assert_eq!(data.len(), 1 + HEADER);
    for &c in &encoder.memory.order {
        data.extend(program.constants[c].to_be_bytes::<32>());
    }
    data.extend(body);
    Ok(data)
}

/// How many parts beside the head a key of `payload` bytes (constants and program) takes when
/// no data contract may be over `max` bytes: the head holds the header, the parts' addresses
/// and the payload's start; each part a STOP byte and the next piece.
fn parts_for(payload: usize, max: usize) -> Option<u8> {
    (0..=u8::MAX).find(|&m| {
        let head = max.saturating_sub(1 + HEADER + 20 * m as usize);
        head + m as usize * (max - 1) >= payload
    })
}

/// The data contracts of a key whose data is `data` (as [`encode_key`] writes it): the head's
/// payload piece and each part's data (a STOP byte and its piece), for contracts of at most
/// `max` bytes.
fn split_key(data: &[u8], max: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let m = data[PARTS_AT] as usize;
    let payload = &data[1 + HEADER..];
    let head = max.saturating_sub(1 + HEADER + 20 * m).min(payload.len());
    let parts = payload[head..].chunks(max - 1).map(|piece| [&[0u8][..], piece].concat()).collect();
    (payload[..head].to_vec(), parts)
}

/// The head's data once its parts are at `addresses`: the header, the addresses, its piece.
fn head_with(data: &[u8], piece: &[u8], addresses: &[Address]) -> Vec<u8> {
    let mut head = data[..1 + HEADER].to_vec();
    for address in addresses {
        head.extend(address.as_slice());
    }
    head.extend(piece);
    head
}

/// The creation code of a key's data contract, or `None` when its data takes several
/// contracts (then [`deploy_key`] deploys them).
pub fn key_creation_code(data: &[u8]) -> Result<Option<Vec<u8>>> {
    match data.get(PARTS_AT) {
        Some(0) => Ok(Some(data_contract_creation_code(data)?)),
        _ => Ok(None),
    }
}

/// Deploys a key (its data as [`encode_key`] writes it): its parts first when it has any, then
/// the head, which names them. The head is the key's address; the gas is all of theirs.
pub fn deploy_key(
    chain: &mut Chain,
    data: &[u8],
    decode: super::chain::RevertDecoder,
) -> Result<super::chain::Deployed> {
    deploy_key_within(chain, data, MAX_RUNTIME_BYTES, decode)
}

/// [`deploy_key`] with data contracts of at most `max` bytes (a chain with a smaller code-size
/// limit; tests split small keys with it).
pub fn deploy_key_within(
    chain: &mut Chain,
    data: &[u8],
    max: usize,
    decode: super::chain::RevertDecoder,
) -> Result<super::chain::Deployed> {
    let mut data = data.to_vec();
    if data.len() <= PARTS_AT || &data[1..5] != MAGIC || max <= 1 + HEADER + 20 {
        return Err(EvmError::Generate("not a zkinfer key's data (create-evm-verifier --reusable)".into()).into());
    }
    data[PARTS_AT] = parts_for(data.len() - 1 - HEADER, max).ok_or_else(|| too_large("over 255 contracts"))?;
    let (piece, parts) = split_key(&data, max);
    let mut addresses = Vec::with_capacity(parts.len());
    let mut gas = 0;
    for (i, part) in parts.iter().enumerate() {
        let deployed =
            chain.deploy(&format!("key part {} deployment", i + 1), data_contract_creation_code(part)?, decode)?;
        gas += deployed.gas_used;
        addresses.push(deployed.address);
    }
    let head = head_with(&data, &piece, &addresses);
    let mut deployed = chain.deploy("key deployment", data_contract_creation_code(&head)?, decode)?;
    deployed.gas_used += gas;
    Ok(deployed)
}

/// Creation code that deploys `runtime` as a contract's code, unchanged.
pub fn data_contract_creation_code(runtime: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(runtime.len())
        .ok()
        .filter(|&l| l as usize <= MAX_RUNTIME_BYTES)
        .ok_or(EvmError::ContractTooLarge { size: runtime.len() })?;
    let [hi, lo] = len.to_be_bytes();
    // PUSH2 len, DUP1, PUSH1 12, PUSH1 0, CODECOPY, PUSH1 0, RETURN; the runtime follows.
    let mut code = vec![0x61, hi, lo, 0x80, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, 0x00, 0xf3];
    code.extend_from_slice(runtime);
    Ok(code)
}

/// Compiles the shared verifier (solc's whole optimizer).
pub fn compile_shared_verifier(solc: &Path) -> Result<CompiledContract> {
    let file = "Halo2SharedVerifier.sol";
    let mut compiled =
        compile_sources(solc, &[(file, SHARED_VERIFIER_SOURCE)], &[(file, SHARED_VERIFIER_CONTRACT)], Optimizer::Full)?;
    Ok(compiled.pop().expect("one contract asked for"))
}

/// Whether the contract at `address` is a shared verifier that reads this version's keys
/// ([`MAGIC`]): one deployed by an older zkinfer would refuse every proof of a new key.
pub fn reads_our_keys(chain: &mut Chain, address: Address) -> Result<bool> {
    let answer = chain.call(address, keyEncodingCall {}.abi_encode())?;
    Ok(answer.ok().and_then(|a| keyEncodingCall::abi_decode_returns(&a).ok()).is_some_and(|v| v.0 == *MAGIC))
}

/// `verifyProof(key, instances, proof)`, ABI-encoded with its selector.
pub fn encode_verify_call(key: Address, instances: &[Fr], proof: &[u8]) -> Vec<u8> {
    let instances = instances.iter().map(|i| U256::from_le_bytes(i.to_repr())).collect();
    verifyProofCall { vk: key, instances, proof: proof.to_vec().into() }.abi_encode()
}

/// Calls the shared verifier at `verifier` with `calldata` (from [`encode_verify_call`]): it
/// answers false for an invalid proof, and then nothing is sent; a valid one is sent as a
/// transaction, whose gas is reported.
pub fn verify_with(chain: &mut Chain, verifier: Address, calldata: Vec<u8>) -> Result<EvmVerification> {
    let rejected = |reason: String| EvmVerification { verified: false, gas_used: None, reason: Some(reason) };
    let answer = match chain.call(verifier, calldata.clone())? {
        Ok(answer) => answer,
        Err(revert) => {
            return Ok(rejected(format!("the shared verifier reverted ({})", revert.describe(no_custom_errors))))
        }
    };
    match verifyProofCall::abi_decode_returns(&answer) {
        Ok(true) => {}
        Ok(false) => {
            return Ok(rejected(
                "the shared verifier returned false: the proof, its public instances or the key are invalid".into(),
            ))
        }
        Err(_) => {
            return Err(Error::Evm(EvmError::Execution(format!(
                "the contract at {verifier} did not answer as the shared verifier does; is it one?"
            ))))
        }
    }
    let mined = chain.send("verification", verifier, calldata, no_custom_errors, |_| Ok(()))?;
    Ok(EvmVerification { verified: true, gas_used: Some(mined.gas_used), reason: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program that only checks a pairing of two points read from calldata against `g2`.
    fn pairing_program(g2: [U256; 8]) -> Program {
        Program {
            constants: g2.to_vec(),
            vars: 4,
            ops: vec![
                Op::LoadPoint { dst: 0, offset: 0 },
                Op::LoadPoint { dst: 2, offset: 0x40 },
                Op::Pairing { lhs: Word::Var(0), rhs: Word::Var(2), g2: Word::Const(0) },
            ],
            num_instances: 0,
            calldata_len: 0x80,
            ..Program::default()
        }
    }

    /// The program of a key's data (after one run of two points read, 7 bytes, the pairing).
    fn body(data: &[u8]) -> &[u8] {
        let constants = u16::from_be_bytes([data[13], data[14]]) as usize;
        &data[1 + HEADER + 32 * constants..]
    }

    #[test]
    fn a_key_split_into_parts_joins_back_into_its_data() {
        for (payload, max) in [(100usize, 1000usize), (5000, 1000), (20_000, 4096), (977, 1000), (978, 1000)] {
            let m = parts_for(payload, max).unwrap();
            let mut data = vec![0u8; 1 + HEADER];
            data[PARTS_AT] = m;
            data.extend((0..payload).map(|i| (i % 251) as u8));
            let (piece, parts) = split_key(&data, max);
            assert_eq!(parts.len(), m as usize, "{payload} in {max}");
            let addresses: Vec<Address> = (0..m).map(|i| Address::repeat_byte(i + 1)).collect();
            let head = head_with(&data, &piece, &addresses);
            assert!(head.len() <= max && parts.iter().all(|p| p.len() <= max && p[0] == 0), "{payload} in {max}");
            let joined: Vec<u8> = piece.iter().chain(parts.iter().flat_map(|p| &p[1..])).copied().collect();
            assert_eq!(joined, data[1 + HEADER..], "{payload} in {max}");
            assert_eq!(&head[1 + HEADER..1 + HEADER + 20 * m as usize], addresses.concat::<u8>().as_slice());
            // The fewest parts: one fewer does not hold the payload.
            let fewer = |m: usize| max - (1 + HEADER + 20 * m) + m * (max - 1);
            assert!(m == 0 || fewer(m as usize - 1) < payload, "{payload} in {max}");
        }
    }

    #[test]
    fn a_key_leaves_the_g2_generator_to_the_verifier_and_keeps_any_other_g2() {
        let minus_s_g2 = [U256::from(5), U256::from(6), U256::from(7), U256::from(8)];
        let standard: Vec<U256> = g2_generator().into_iter().chain(minus_s_g2).collect();
        let data = encode_key(&pairing_program(standard.try_into().unwrap())).unwrap();
        assert_eq!(u16::from_be_bytes([data[13], data[14]]), 4, "only -s*G2 is stored");
        assert_eq!(body(&data)[7], code::PAIRING_G, "{:?}", body(&data));
        let mut other = g2_generator();
        other[0] += U256::from(1);
        let custom: Vec<U256> = other.into_iter().chain(minus_s_g2).collect();
        let data = encode_key(&pairing_program(custom.try_into().unwrap())).unwrap();
        assert_eq!(u16::from_be_bytes([data[13], data[14]]), 8, "both G2 points are stored");
        assert_eq!(body(&data)[7], code::PAIRING, "{:?}", body(&data));
    }

    /// The operations of a key's program, each its code and, for a run, its count.
    fn dispatches(data: &[u8]) -> Vec<(u8, u8)> {
        let body = body(data);
        let mut ops = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let (op, n) = (body[i], body.get(i + 1).copied().unwrap_or(0));
            ops.push((op, if [code::MULS, code::WIDE, code::EC_MSM, code::SQUARINGS].contains(&op) { n } else { 0 }));
            i += match op {
                code::END => 1,
                code::MUL | code::SUB | code::ADD => 4,
                code::MUL_ADD | code::MUL_SUB | code::EC_MUL_ADD => 5,
                code::MULS => 2 + 3 * n as usize,
                code::SCALARS | code::POINTS | code::PAIRING_G | code::PAIRING => 7,
                code::ASSERT_EQ => 6,
                code::SQUEEZE => 9,
                code::EC_MUL_ADD_FAR => 9,
                code::EC_MSM => 6 + 4 * n as usize,
                code::SQUARINGS => 6,
                code::WIDE => {
                    let mut at = i + 2;
                    for _ in 0..n {
                        at += if [code::MUL_ADD, code::MUL_SUB].contains(&body[at]) { 9 } else { 7 };
                    }
                    at - i
                }
                other => panic!("no such operation in these programs: {other}"),
            };
        }
        ops
    }

    /// Three points and three scalars read, sums of scalar times point chained from the first
    /// point, the last sum paired; `also_read` sums read by an equality check as well.
    fn msm_program(also_read: &[u32]) -> Program {
        let checks = also_read.iter().map(|&v| Op::AssertEq { a: Word::Var(v), b: Word::Var(0), words: 2 });
        msm_program_with(checks.collect())
    }

    /// [`msm_program`] with `extra` operations before the pairing.
    fn msm_program_with(extra: Vec<Op>) -> Program {
        let mut ops = vec![
            Op::LoadPoint { dst: 0, offset: 0 },
            Op::LoadPoint { dst: 2, offset: 0x40 },
            Op::LoadPoint { dst: 4, offset: 0x80 },
            Op::LoadScalar { dst: 6, offset: 0xc0 },
            Op::LoadScalar { dst: 7, offset: 0xe0 },
            Op::LoadScalar { dst: 8, offset: 0x100 },
            Op::EcMulAdd { dst: 9, acc: Word::Var(0), point: Word::Var(2), scalar: Word::Var(6) },
            Op::EcMulAdd { dst: 11, acc: Word::Var(9), point: Word::Var(4), scalar: Word::Var(7) },
            Op::EcMulAdd { dst: 13, acc: Word::Var(11), point: Word::Var(2), scalar: Word::Var(8) },
        ];
        ops.extend(extra);
        ops.push(Op::Pairing { lhs: Word::Var(13), rhs: Word::Var(2), g2: Word::Const(0) });
        let g2 = g2_generator().into_iter().chain([U256::from(5), U256::from(6), U256::from(7), U256::from(8)]);
        Program { constants: g2.collect(), vars: 17, ops, calldata_len: 0x120, ..Program::default() }
    }

    /// The elliptic-curve operations `program`'s key dispatches (ecMul-adds and MSMs).
    fn ec_dispatches(program: &Program) -> Vec<(u8, u8)> {
        let ops = dispatches(&encode_key(program).unwrap());
        ops.into_iter().filter(|(op, _)| [code::EC_MUL_ADD, code::EC_MSM].contains(op)).collect()
    }

    #[test]
    fn a_chain_of_ec_mul_adds_is_one_msm_only_where_no_other_operation_reads_its_sums() {
        assert_eq!(ec_dispatches(&msm_program(&[])), [(code::EC_MSM, 3)]);
        // The first sum is read by another operation: it is stored, and the chain is cut there.
        assert_eq!(ec_dispatches(&msm_program(&[9])), [(code::EC_MUL_ADD, 0), (code::EC_MSM, 2)]);
        // The second: two operations, the first of them a chain of two.
        assert_eq!(ec_dispatches(&msm_program(&[11])), [(code::EC_MSM, 2), (code::EC_MUL_ADD, 0)]);
        // A sum's second word read elsewhere: that sum is stored, the chain cut after it.
        let y = Op::AssertEq { a: Word::Var(10), b: Word::Var(0), words: 1 };
        assert_eq!(ec_dispatches(&msm_program_with(vec![y])), [(code::EC_MUL_ADD, 0), (code::EC_MSM, 2)]);
        // Both sums hashed by a challenge over a run of words that starts at the first: every
        // word of the run counts, so each ecMul-add stays on its own.
        let squeeze = Op::Squeeze { dst: 15, hash: 16, start: 9, len: 4 };
        assert_eq!(ec_dispatches(&msm_program_with(vec![squeeze])), [(code::EC_MUL_ADD, 0); 3]);
    }

    #[test]
    fn repeated_squarings_are_one_operation_only_where_no_other_operation_reads_them() {
        // x read; x^2, x^4, .. x^64 by six squarings; the last (and `also_read`) checked.
        let program = |also_read: Option<u32>| {
            let mut ops = vec![Op::LoadScalar { dst: 0, offset: 0 }];
            ops.extend((0..6).map(|i| Op::Mul { dst: i + 1, a: Word::Var(i), b: Word::Var(i) }));
            ops.extend(also_read.map(|v| Op::AssertEq { a: Word::Var(v), b: Word::Var(0), words: 1 }));
            ops.push(Op::AssertEq { a: Word::Var(6), b: Word::Var(0), words: 1 });
            Program { vars: 7, ops, calldata_len: 32, ..Program::default() }
        };
        let squarings = |ops: Vec<(u8, u8)>| -> Vec<(u8, u8)> {
            ops.into_iter().filter(|(op, _)| [code::SQUARINGS, code::MUL, code::MULS].contains(op)).collect()
        };
        let all = squarings(dispatches(&encode_key(&program(None)).unwrap()));
        assert_eq!(all, [(code::SQUARINGS, 6)]);
        // x^8 read elsewhere: stored, and the squarings after it one more operation.
        let cut = squarings(dispatches(&encode_key(&program(Some(3))).unwrap()));
        assert_eq!(cut, [(code::SQUARINGS, 3), (code::SQUARINGS, 3)]);
        // x^32 read elsewhere: the last squaring alone is a product.
        let cut = squarings(dispatches(&encode_key(&program(Some(5))).unwrap()));
        assert_eq!(cut, [(code::SQUARINGS, 5), (code::MUL, 0)]);
    }

    #[test]
    fn arithmetic_beyond_one_byte_operands_is_dispatched_in_runs() {
        // 300 scalars read and all kept to the end: their words go beyond the first 256.
        let n = 300u32;
        let mut ops: Vec<Op> = (0..n).map(|i| Op::LoadScalar { dst: i, offset: 32 * i }).collect();
        ops.extend((0..n - 1).map(|i| Op::Mul { dst: n + i, a: Word::Var(i), b: Word::Var(i + 1) }));
        ops.extend((0..n).map(|i| Op::AssertEq { a: Word::Var(i), b: Word::Var(n + i.min(n - 2)), words: 1 }));
        let program = Program { vars: 2 * n, ops, calldata_len: 32 * n, ..Program::default() };
        let ops = dispatches(&encode_key(&program).unwrap());
        let wide: Vec<u8> = ops.iter().filter(|(op, _)| *op == code::WIDE).map(|&(_, n)| n).collect();
        let near = ops.iter().filter(|(op, _)| [code::MUL, code::MULS].contains(op)).count();
        // Every product is in a run of at most 255: the wide ones in few dispatches.
        let products: u32 = wide.iter().map(|&n| n as u32).sum::<u32>()
            + ops
                .iter()
                .map(|&(op, n)| if op == code::MULS { n as u32 } else { (op == code::MUL) as u32 })
                .sum::<u32>();
        assert_eq!(products, n - 1, "{ops:?}");
        assert!(!wide.is_empty() && wide.len() <= 3, "runs {wide:?}, near dispatches {near}");
    }
}
