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
use super::program::{Layout, Op, Program, Word};
use super::solidity::{compile_sources, CompiledContract, Optimizer};
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
pub const MAGIC: &[u8; 4] = b"ZKV2";
/// Bytes of the data's header (magic, counts) after the leading STOP byte.
const HEADER: usize = 20;
/// Memory words before the constants: where arithmetic stages operands that lie beyond the
/// words a 1-byte operand names.
const STAGING: u32 = 4;
/// Words a 1-byte operand names.
const NEAR: u32 = 256;

/// Operation codes, as the shared verifier dispatches them (the most frequent first: its
/// `switch` compares them in order).
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

/// Where a key's words live in the shared verifier's memory: the staging words, the constants
/// that field arithmetic reads (its 1-byte operands reach the first 256 words), the variables
/// (the transcript's last), then the other constants (points, G2).
struct Memory {
    layout: Layout,
    /// The word of each constant.
    constant: Vec<u32>,
    /// The constants in the order of the key's data: the near ones, then the others.
    order: Vec<usize>,
    /// How many are near.
    near: usize,
    /// The variables' first word.
    vars: u32,
    /// Words in all.
    words: u32,
}

impl Memory {
    fn of(program: &Program) -> Memory {
        let layout = Self::transcript_by_use(program, program.layout_with(true));
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
        let vars = STAGING + near.len() as u32;
        let far_at = vars + layout.words;
        let mut constant = vec![0; program.constants.len()];
        for (i, &c) in near.iter().enumerate() {
            constant[c] = STAGING + i as u32;
        }
        for (i, &c) in far.iter().enumerate() {
            constant[c] = far_at + i as u32;
        }
        let words = far_at + far.len() as u32;
        Memory { layout, constant, near: near.len(), order: near.into_iter().chain(far).collect(), vars, words }
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

    /// `layout` (the transcript's words last) with the transcript's pieces (the words each
    /// challenge hashes, contiguous and in order, but each anywhere) reordered: those field
    /// arithmetic reads most per word first, so that they are within 1-byte operands' reach.
    fn transcript_by_use(program: &Program, mut layout: Layout) -> Layout {
        let pieces: Vec<(u32, u32)> = program
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Squeeze { start, len, .. } => Some((*start, *len)),
                _ => None,
            })
            .collect();
        let mut piece_of = vec![usize::MAX; program.vars as usize];
        for (i, &(start, len)) in pieces.iter().enumerate() {
            for v in start..start + len {
                if piece_of[v as usize] != usize::MAX {
                    return layout; // pieces that overlap keep their order
                }
                piece_of[v as usize] = i;
            }
        }
        let mut reads = vec![0u64; pieces.len()];
        for op in program.ops.iter().filter(|op| Self::near(op)) {
            op.reads(|word, _| {
                if let Word::Var(v) = word {
                    if let Some(read) = reads.get_mut(piece_of[v as usize]) {
                        *read += 1;
                    }
                }
            });
        }
        // The pieces lie from the lowest of their words on, in order.
        let Some(base) = pieces.iter().map(|&(start, _)| layout.word[start as usize]).min() else { return layout };
        let mut order: Vec<usize> = (0..pieces.len()).collect();
        // Densest first; ties keep the transcript's order.
        order.sort_by(|&a, &b| (reads[b] * pieces[a].1 as u64).cmp(&(reads[a] * pieces[b].1 as u64)).then(a.cmp(&b)));
        let mut at = base;
        for i in order {
            let (start, len) = pieces[i];
            for (k, v) in (start..start + len).enumerate() {
                layout.word[v as usize] = at + k as u32;
            }
            at += len;
        }
        layout
    }

    fn word(&self, word: Word) -> u32 {
        match word {
            Word::Const(c) => self.constant[c as usize],
            Word::Var(v) => self.vars + self.layout.word[v as usize],
        }
    }
}

struct Encoder<'a> {
    program: &'a Program,
    memory: Memory,
    out: Vec<u8>,
    /// The open run of products: where its `MUL` is (one product) or its `MULS` count is, and
    /// the count.
    muls: Option<(usize, u8)>,
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
        self.out.push(code);
        for o in operands {
            self.out.extend(o.to_be_bytes());
        }
    }

    fn input(offset: u32) -> Result<u16> {
        u16::try_from(offset).map_err(|_| too_large("its instances and proof are over 64 KiB"))
    }

    /// Field arithmetic with 1-byte operands: `code`, `dst`, then `sources`. An operand beyond
    /// the first 256 words is copied into a staging word first (a result, out of one).
    fn arith(&mut self, code: u8, dst: u32, sources: &[Word]) -> Result<()> {
        let mut near = Vec::with_capacity(sources.len() + 1);
        for (k, source) in sources.iter().enumerate() {
            let w = self.word(*source);
            if w < NEAR {
                near.push(w as u8);
            } else {
                self.copy(k as u16 * 32, self.offset(*source)?, 1);
                near.push(k as u8);
            }
        }
        let d = self.word(Word::Var(dst));
        let far = d >= NEAR;
        near.insert(0, if far { 0 } else { d as u8 });
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
        if far {
            self.copy(self.var(dst)?, 0, 1);
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
                let words = |ws: &mut dyn Iterator<Item = Word>| -> Option<Vec<u8>> {
                    ws.map(|w| u8::try_from(self.word(w)).ok()).collect()
                };
                let (Some(srcs), Some(dsts), Ok(n)) = (
                    words(&mut srcs.iter().copied()),
                    words(&mut dsts.iter().map(|&d| Word::Var(d))),
                    u8::try_from(dsts.len()),
                ) else {
                    return Err(EvmError::Generate("a batch inversion beyond 1-byte operands".into()).into());
                };
                self.emit(code::BATCH_INVERT, &[]);
                self.out.push(n);
                self.out.extend(srcs);
                self.out.extend(dsts);
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
    let near = |w: Word| memory.word(w) < NEAR;
    let all_near = inverting.ops.iter().all(|op| match op {
        Op::BatchInvert { dsts, srcs } => {
            dsts.len() <= u8::MAX as usize && srcs.iter().all(|&s| near(s)) && dsts.iter().all(|&d| near(Word::Var(d)))
        }
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
    let mut encoder = Encoder { program, memory, out: Vec::new(), muls: None };
    let mut i = 0;
    while i < program.ops.len() {
        let run = match encoder.reads(i)? {
            Some(n) => Some(n),
            None => encoder.copies(i)?,
        };
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
    data.extend((body.len() as u32).to_be_bytes());
    debug_assert_eq!(data.len(), 1 + HEADER);
    for &c in &encoder.memory.order {
        data.extend(program.constants[c].to_be_bytes::<32>());
    }
    data.extend(body);
    Ok(data)
}

/// Creation code that deploys `runtime` as a contract's code, unchanged.
pub fn data_contract_creation_code(runtime: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(runtime.len())
        .ok()
        .filter(|&l| l as usize <= super::solidity::MAX_RUNTIME_BYTES)
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
}
