// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title zkinfer's reusable Halo2 verifier
/// @notice One contract per chain verifies the proofs of every zkinfer circuit (KZG on BN254,
/// SHPLONK openings, Keccak transcript). What a circuit's proofs must satisfy is its verifying
/// key: a data contract (`zkinfer create-evm-verifier --reusable` writes it) holding the key's
/// constants (commitments, gate coefficients, the SRS's G2 points) and its verification program,
/// the same steps the direct verifier of that key runs, encoded one operation after another.
/// This contract runs that program over the instances and the proof.
///
/// Key data layout (big-endian; the data contract's code starts with one STOP byte so that
/// calling it does nothing): "ZKV3", instances (2 bytes), proof bytes (4), memory words (2),
/// constants (2), of which near (2), the near ones' first word (2), program bytes (4), parts
/// (1), then the constants (32 bytes each; the near ones first), then the program, whose last
/// byte is operation 0 (the end). A key over EIP-170's contract size takes parts: the head (the
/// key's address) holds the header, the parts' addresses (20 bytes each) and the start of the
/// constants and program, each part a STOP byte and what follows, in order.
/// Memory while verifying: the near constants (those field arithmetic reads) and the program's
/// variables, the pieces field arithmetic uses most first, then the other constants (as the
/// program's operands name them: 1-byte operands are word indices, 2-byte ones byte offsets), a
/// scratch area for the precompiles, the instances and the proof, the program.
contract Halo2SharedVerifier {
    /// @notice The key encoding this verifier reads (the first bytes of a key's data): a key
    /// of another encoding is refused.
    function keyEncoding() external pure returns (bytes4) {
        return "ZKV3";
    }

    /// @notice Whether `proof` is a valid proof for `instances` of the circuit whose verifying
    /// key is the data contract at `vk`. Never reverts on a bad proof: it returns false.
    function verifyProof(address vk, uint256[] calldata instances, bytes calldata proof)
        external
        view
        returns (bool)
    {
        assembly {
            // A point must be on the curve y^2 = x^3 + 3, its coordinates below q.
            function on_curve(x, y) -> ok {
                let q := 0x30644e72e131a029b85045b68181585d97816a916871ca8d3c208c16d87cfd47
                ok := and(and(lt(x, q), lt(y, q)), eq(mulmod(y, y, q), addmod(mulmod(mulmod(x, x, q), x, q), 3, q)))
            }

            function fail() {
                mstore(0, 0)
                return(0, 0x20)
            }

            // G1 point at `to` from limbs: bits (1 byte), limbs per coordinate n (1 byte), then
            // the 2n limbs' offsets (x's, then y's, lowest first); returns the next operation.
            function from_limbs(ip, w, to) -> next {
                let bits := and(shr(224, w), 0xff)
                let n := and(shr(216, w), 0xff)
                let limbs := add(ip, 5)
                let x := 0
                let y := 0
                for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                    let shift := mul(i, bits)
                    let width := bits
                    if gt(add(shift, bits), 256) { width := sub(256, shift) }
                    let lx := mload(and(shr(240, mload(add(limbs, shl(1, i)))), 0xffff))
                    let ly := mload(and(shr(240, mload(add(limbs, shl(1, add(i, n))))), 0xffff))
                    if iszero(and(lt(lx, shl(width, 1)), lt(ly, shl(width, 1)))) { fail() }
                    x := add(x, shl(shift, lx))
                    y := add(y, shl(shift, ly))
                }
                if iszero(on_curve(x, y)) { fail() }
                mstore(to, x)
                mstore(add(to, 0x20), y)
                next := add(limbs, shl(2, n))
            }

            // The G1 point at `to` := the point at `acc` + the scalar at `scalar` times the point
            // at `point` (ecMul into the scratch area after acc's copy, then ecAdd).
            function ec_mul_add(scratch, to, acc, point, scalar) {
                mstore(scratch, mload(acc))
                mstore(add(scratch, 0x20), mload(add(acc, 0x20)))
                mstore(add(scratch, 0x40), mload(point))
                mstore(add(scratch, 0x60), mload(add(point, 0x20)))
                mstore(add(scratch, 0x80), mload(scalar))
                if iszero(staticcall(gas(), 0x07, add(scratch, 0x40), 0x60, add(scratch, 0x40), 0x40)) { fail() }
                if iszero(staticcall(gas(), 0x06, scratch, 0x80, to, 0x40)) { fail() }
            }

            // base^exponent mod r into `to`, by the modexp precompile.
            function modexp(scratch, base, exponent, r, to) {
                mstore(scratch, 0x20)
                mstore(add(scratch, 0x20), 0x20)
                mstore(add(scratch, 0x40), 0x20)
                mstore(add(scratch, 0x60), base)
                mstore(add(scratch, 0x80), exponent)
                mstore(add(scratch, 0xa0), r)
                if iszero(staticcall(gas(), 0x05, scratch, 0xc0, to, 0x20)) { fail() }
            }

            // The pairing check e(lhs, G2) * e(rhs, -s G2) == 1, G2 already at scratch + 0x40
            // (4 words), -s G2 at `minusSG2` (4 words).
            function pairing(scratch, lhs, rhs, minusSG2) {
                mstore(scratch, mload(lhs))
                mstore(add(scratch, 0x20), mload(add(lhs, 0x20)))
                mstore(add(scratch, 0xc0), mload(rhs))
                mstore(add(scratch, 0xe0), mload(add(rhs, 0x20)))
                mcopy_words(add(scratch, 0x100), minusSG2, 4)
                if iszero(staticcall(gas(), 0x08, scratch, 0x180, scratch, 0x20)) { fail() }
                if iszero(mload(scratch)) { fail() }
            }

            function mcopy_words(to, from, n) {
                for { let i := 0 } lt(i, shl(5, n)) { i := add(i, 0x20) } { mstore(add(to, i), mload(add(from, i))) }
            }

            // Reads the key's header and lays out memory: the constants and the variables (as
            // the key places them), a scratch area for the precompiles, the instances and the
            // proof, the program.
            function setup(key, instancesAt, numInstances, proofAt, proofLen) -> scratch, input, ip, end {
                let size := extcodesize(key)
                if lt(size, 0x18) { fail() }
                extcodecopy(key, 0, 1, 0x17)
                let header := mload(0)
                if iszero(eq(shr(224, header), 0x5a4b5633)) { fail() } // "ZKV3"
                if iszero(eq(numInstances, and(shr(208, header), 0xffff))) { fail() }
                if iszero(eq(proofLen, and(shr(176, header), 0xffffffff))) { fail() }
                scratch := shl(5, and(shr(160, header), 0xffff))
                input := add(scratch, 0x180)
                calldatacopy(input, instancesAt, shl(5, numInstances))
                calldatacopy(add(input, shl(5, numInstances)), proofAt, proofLen)
                ip, end := load_key(key, size, header, scratch, add(input, add(shl(5, numInstances), proofLen)))
            }

            // Copies the key's constants (the near ones to their word, the others last before the
            // scratch area) and its program (to `at`, where it runs: from ip to end); `size` is
            // the key's code size.
            function load_key(key, size, header, scratch, at) -> ip, end {
                let constantBytes := shl(5, and(shr(144, header), 0xffff))
                let nearBytes := shl(5, and(shr(128, header), 0xffff))
                let nearAt := shl(5, and(shr(112, header), 0xffff))
                let programLen := and(shr(80, header), 0xffffffff)
                if or(gt(nearBytes, constantBytes), gt(add(nearAt, constantBytes), scratch)) { fail() }
                let farBytes := sub(constantBytes, nearBytes)
                ip := add(at, constantBytes)
                end := add(ip, programLen)
                switch byte(22, header)
                case 0 {
                    if iszero(eq(size, add(add(0x18, constantBytes), programLen))) { fail() }
                    extcodecopy(key, ip, add(0x18, constantBytes), programLen)
                    extcodecopy(key, nearAt, 0x18, nearBytes)
                    extcodecopy(key, sub(scratch, farBytes), add(0x18, nearBytes), farBytes)
                }
                default {
                    // A key over EIP-170: the constants and the program run on from the head
                    // into each part, joined at `at`.
                    if iszero(eq(join_parts(key, size, byte(22, header), at), end)) { fail() }
                    mcopy_words(nearAt, at, shr(5, nearBytes))
                    mcopy_words(sub(scratch, farBytes), add(at, nearBytes), shr(5, farBytes))
                }
            }

            // The head (of code size `size`) names its parts (20-byte addresses after the
            // header); copies its piece, then each part's (after its STOP byte), from `to` on;
            // returns where they end.
            function join_parts(key, size, parts, to) -> at {
                let headStart := add(0x18, mul(20, parts))
                if lt(size, headStart) { fail() }
                extcodecopy(key, to, headStart, sub(size, headStart))
                at := add(to, sub(size, headStart))
                for { let i := 0 } lt(i, parts) { i := add(i, 1) } {
                    extcodecopy(key, 0, add(0x18, mul(20, i)), 20)
                    let part := shr(96, mload(0))
                    let partSize := extcodesize(part)
                    if iszero(partSize) { fail() }
                    extcodecopy(part, at, 1, sub(partSize, 1))
                    at := add(at, sub(partSize, 1))
                }
            }

            let scratch, input, ip, end := setup(vk, instances.offset, instances.length, proof.offset, proof.length)
            // BN254's scalar field modulus r, on the stack (a constant would be copied from code
            // at each use).
            let r := 0x30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001

            // The program: one byte of operation, then its operands. Field arithmetic names
            // memory words by 1-byte indices (byte i of the operation's word w); the other
            // operations take 2-byte byte offsets (a, b, c, d), unless said otherwise. The
            // cases stand in the order of their frequency in the programs zkinfer generates (a
            // switch compares its cases one after another, 22 gas each).
            // Until the program's last operation, the end (a check of the whole program's length
            // at each step would cost more).
            for {} 1 {} {
                let w := mload(ip)
                switch shr(248, w)
                // w1 := w2 * w3 mod r
                case 1 {
                    mstore(shl(5, byte(1, w)), mulmod(mload(shl(5, byte(2, w))), mload(shl(5, byte(3, w))), r))
                    ip := add(ip, 4)
                }
                // w1 := w2 * w3 + w4 mod r
                case 3 {
                    mstore(
                        shl(5, byte(1, w)),
                        addmod(mulmod(mload(shl(5, byte(2, w))), mload(shl(5, byte(3, w))), r), mload(shl(5, byte(4, w))), r)
                    )
                    ip := add(ip, 5)
                }
                // w1 := w2 - w3 mod r
                case 5 {
                    mstore(shl(5, byte(1, w)), addmod(mload(shl(5, byte(2, w))), sub(r, mload(shl(5, byte(3, w)))), r))
                    ip := add(ip, 4)
                }
                // w1 := w4 - w2 * w3 mod r
                case 4 {
                    mstore(
                        shl(5, byte(1, w)),
                        addmod(mload(shl(5, byte(4, w))), sub(r, mulmod(mload(shl(5, byte(2, w))), mload(shl(5, byte(3, w))), r)), r)
                    )
                    ip := add(ip, 5)
                }
                // n (w1) products, each of 3 bytes (x, y, z): x := y * z mod r
                case 2 {
                    let p := add(ip, 2)
                    for { let last := add(p, mul(3, byte(1, w))) } lt(p, last) { p := add(p, 3) } {
                        let v := mload(p)
                        mstore(shl(5, byte(0, v)), mulmod(mload(shl(5, byte(1, v))), mload(shl(5, byte(2, v))), r))
                    }
                    ip := p
                }
                // w1 := w2 + w3 mod r
                case 6 {
                    mstore(shl(5, byte(1, w)), addmod(mload(shl(5, byte(2, w))), mload(shl(5, byte(3, w))), r))
                    ip := add(ip, 4)
                }
                // challenge: a := keccak256(words c at b ..) mod r, the whole hash to the word
                // after the operands (d); one word is hashed with a 0x01 byte after it
                case 8 {
                    let d := and(shr(184, w), 0xffff)
                    let h
                    switch and(shr(200, w), 0xffff)
                    case 1 {
                        mstore(scratch, mload(and(shr(216, w), 0xffff)))
                        mstore8(add(scratch, 0x20), 1)
                        h := keccak256(scratch, 0x21)
                    }
                    default { h := keccak256(and(shr(216, w), 0xffff), shl(5, and(shr(200, w), 0xffff))) }
                    mstore(d, h)
                    mstore(and(shr(232, w), 0xffff), mod(h, r))
                    ip := add(ip, 9)
                }
                // c points from input offset b into a.., each on the curve
                case 10 {
                    let from := add(input, and(shr(216, w), 0xffff))
                    for { let i := 0 } lt(i, shl(6, and(shr(200, w), 0xffff))) { i := add(i, 0x40) } {
                        let x := mload(add(from, i))
                        let y := mload(add(from, add(i, 0x20)))
                        if iszero(on_curve(x, y)) { fail() }
                        mstore(add(and(shr(232, w), 0xffff), i), x)
                        mstore(add(and(shr(232, w), 0xffff), add(i, 0x20)), y)
                    }
                    ip := add(ip, 7)
                }
                // batch inversion: n (w1) pairs of 1-byte words (a source, its result): the
                // prefix products in the results' words, one modexp, then back down (one word
                // read gives a pair and the one before it)
                case 12 {
                    let first := add(ip, 2)
                    let last := add(first, shl(1, sub(byte(1, w), 1)))
                    let v := mload(first)
                    let p := mload(shl(5, byte(0, v)))
                    mstore(shl(5, byte(1, v)), p)
                    for { let q := add(first, 2) } iszero(gt(q, last)) { q := add(q, 2) } {
                        v := mload(q)
                        p := mulmod(p, mload(shl(5, byte(0, v))), r)
                        mstore(shl(5, byte(1, v)), p)
                    }
                    modexp(scratch, p, sub(r, 2), r, scratch)
                    p := mload(scratch)
                    for { let q := last } gt(q, first) { q := sub(q, 2) } {
                        v := mload(sub(q, 2))
                        mstore(shl(5, byte(3, v)), mulmod(mload(shl(5, byte(1, v))), p, r))
                        p := mulmod(p, mload(shl(5, byte(2, v))), r)
                    }
                    mstore(shl(5, byte(1, mload(first))), p)
                    ip := add(last, 2)
                }
                // c scalars from input offset b into a.., each below r
                case 9 {
                    let from := add(input, and(shr(216, w), 0xffff))
                    for { let i := 0 } lt(i, shl(5, and(shr(200, w), 0xffff))) { i := add(i, 0x20) } {
                        let v := mload(add(from, i))
                        if iszero(lt(v, r)) { fail() }
                        mstore(add(and(shr(232, w), 0xffff), i), v)
                    }
                    ip := add(ip, 7)
                }
                // c (1 byte) words from b to a
                case 11 {
                    mcopy_words(and(shr(232, w), 0xffff), and(shr(216, w), 0xffff), byte(5, w))
                    ip := add(ip, 6)
                }
                // field arithmetic beyond 1-byte operands' reach: n (w1) operations, each its
                // code (1, 3, 4, 5 or 6 as above), then its operands as 2-byte byte offsets
                case 21 {
                    let p := add(ip, 2)
                    for { let n := byte(1, w) } n { n := sub(n, 1) } {
                        let v := mload(p)
                        let a := and(shr(232, v), 0xffff)
                        let b := mload(and(shr(216, v), 0xffff))
                        let c := mload(and(shr(200, v), 0xffff))
                        switch byte(0, v)
                        case 1 {
                            mstore(a, mulmod(b, c, r))
                            p := add(p, 7)
                        }
                        case 3 {
                            mstore(a, addmod(mulmod(b, c, r), mload(and(shr(184, v), 0xffff)), r))
                            p := add(p, 9)
                        }
                        case 4 {
                            mstore(a, addmod(mload(and(shr(184, v), 0xffff)), sub(r, mulmod(b, c, r)), r))
                            p := add(p, 9)
                        }
                        case 5 {
                            mstore(a, addmod(b, sub(r, c), r))
                            p := add(p, 7)
                        }
                        case 6 {
                            mstore(a, addmod(b, c, r))
                            p := add(p, 7)
                        }
                        default { fail() }
                    }
                    ip := p
                }
                // multi-scalar multiplication: n (1 byte) pairs; G1 point a := point b + the sum
                // of each pair's scalar (2-byte offset) times its point (2-byte offset), the
                // sum kept in the scratch area (ec_mul_add's staging inline: a function call
                // per pair costs ~40 gas more)
                case 22 {
                    let p := add(ip, 6)
                    let from := and(shr(208, w), 0xffff)
                    mstore(scratch, mload(from))
                    mstore(add(scratch, 0x20), mload(add(from, 0x20)))
                    for { let last := add(p, shl(2, byte(1, w))) } lt(p, last) { p := add(p, 4) } {
                        let v := mload(p)
                        let point := shr(240, v)
                        mstore(add(scratch, 0x40), mload(point))
                        mstore(add(scratch, 0x60), mload(add(point, 0x20)))
                        mstore(add(scratch, 0x80), mload(and(shr(224, v), 0xffff)))
                        if iszero(staticcall(gas(), 0x07, add(scratch, 0x40), 0x60, add(scratch, 0x40), 0x40)) { fail() }
                        if iszero(staticcall(gas(), 0x06, scratch, 0x80, scratch, 0x40)) { fail() }
                    }
                    let to := and(shr(224, w), 0xffff)
                    mstore(to, mload(scratch))
                    mstore(add(to, 0x20), mload(add(scratch, 0x20)))
                    ip := p
                }
                // G1 point w1 := point w2 + scalar w4 * point w3 (ecMul, then ecAdd)
                case 7 {
                    ec_mul_add(scratch, shl(5, byte(1, w)), shl(5, byte(2, w)), shl(5, byte(3, w)), shl(5, byte(4, w)))
                    ip := add(ip, 5)
                }
                // n (w1) squarings: a := b^(2^n), offsets a and b (2 bytes each) after n
                case 23 {
                    let x := mload(and(shr(208, w), 0xffff))
                    for { let n := byte(1, w) } n { n := sub(n, 1) } { x := mulmod(x, x, r) }
                    mstore(and(shr(224, w), 0xffff), x)
                    ip := add(ip, 6)
                }
                // a := G1 point b + scalar d * G1 point c (case 7 with 2-byte operands)
                case 20 {
                    ec_mul_add(
                        scratch, and(shr(232, w), 0xffff), and(shr(216, w), 0xffff), and(shr(200, w), 0xffff), and(shr(184, w), 0xffff)
                    )
                    ip := add(ip, 9)
                }
                // G1 point a from limbs: bits (1 byte), limbs per coordinate n (1 byte), then
                // the 2n limbs' offsets (x's, then y's, lowest first)
                case 16 {
                    ip := from_limbs(ip, w, and(shr(232, w), 0xffff))
                }
                // a := b^c mod r (modexp)
                case 13 {
                    modexp(scratch, mload(and(shr(216, w), 0xffff)), mload(and(shr(200, w), 0xffff)), r, and(shr(232, w), 0xffff))
                    ip := add(ip, 7)
                }
                // a := G1 point b + point c (ecAdd)
                case 14 {
                    mstore(scratch, mload(and(shr(216, w), 0xffff)))
                    mstore(add(scratch, 0x20), mload(add(and(shr(216, w), 0xffff), 0x20)))
                    mstore(add(scratch, 0x40), mload(and(shr(200, w), 0xffff)))
                    mstore(add(scratch, 0x60), mload(add(and(shr(200, w), 0xffff), 0x20)))
                    if iszero(staticcall(gas(), 0x06, scratch, 0x80, and(shr(232, w), 0xffff), 0x40)) { fail() }
                    ip := add(ip, 7)
                }
                // a := scalar c * G1 point b (ecMul)
                case 15 {
                    mstore(scratch, mload(and(shr(216, w), 0xffff)))
                    mstore(add(scratch, 0x20), mload(add(and(shr(216, w), 0xffff), 0x20)))
                    mstore(add(scratch, 0x40), mload(and(shr(200, w), 0xffff)))
                    if iszero(staticcall(gas(), 0x07, scratch, 0x60, and(shr(232, w), 0xffff), 0x40)) { fail() }
                    ip := add(ip, 7)
                }
                // the pairing check e(a, G2) * e(b, -s G2) == 1, with BN254's G2 generator and
                // -s G2 at c (4 words)
                case 17 {
                    mstore(add(scratch, 0x40), 0x198e9393920d483a7260bfb731fb5d25f1aa493335a9e71297e485b7aef312c2)
                    mstore(add(scratch, 0x60), 0x1800deef121f1e76426a00665e5c4479674322d4f75edadd46debd5cd992f6ed)
                    mstore(add(scratch, 0x80), 0x090689d0585ff075ec9e99ad690c3395bc4b313370b38ef355acdadcd122975b)
                    mstore(add(scratch, 0xa0), 0x12c85ea5db8c6deb4aab71808dcb408fe3d1e7690c43d37b4ce6cc0166fa7daa)
                    pairing(scratch, and(shr(232, w), 0xffff), and(shr(216, w), 0xffff), and(shr(200, w), 0xffff))
                    ip := add(ip, 7)
                }
                // the pairing check e(a, G2) * e(b, -s G2) == 1, G2 and -s G2 at c (8 words)
                case 18 {
                    mcopy_words(add(scratch, 0x40), and(shr(200, w), 0xffff), 4)
                    pairing(scratch, and(shr(232, w), 0xffff), and(shr(216, w), 0xffff), add(and(shr(200, w), 0xffff), 0x80))
                    ip := add(ip, 7)
                }
                // words (c, 1 byte) at a and b are equal
                case 19 {
                    let n := and(shr(208, w), 0xff)
                    for { let i := 0 } lt(i, shl(5, n)) { i := add(i, 0x20) } {
                        if iszero(eq(mload(add(and(shr(232, w), 0xffff), i)), mload(add(and(shr(216, w), 0xffff), i)))) { fail() }
                    }
                    ip := add(ip, 6)
                }
                // the end: every check passed, if this is the program's last byte
                case 0 {
                    if iszero(eq(add(ip, 1), end)) { fail() }
                    mstore(0, 1)
                    return(0, 0x20)
                }
                default { fail() }
            }
        }
    }
}
