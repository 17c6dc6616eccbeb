//! Signed integers in the BN254 scalar field.

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::halo2curves::ff::PrimeField;

/// Embeds a signed integer: negative values become `p - |v|`. (`from_u128` doubles 64 times
/// whatever the value: most values fit a `u64`, whose conversion is one multiplication; it took
/// half of laying out a large circuit.)
pub fn fe(v: i128) -> Fr {
    let magnitude = match u64::try_from(v.unsigned_abs()) {
        Ok(small) => Fr::from(small),
        Err(_) => Fr::from_u128(v.unsigned_abs()),
    };
    if v < 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Reads a field element back as a signed integer, if it is within ±2^127.
pub fn to_i128(x: &Fr) -> Option<i128> {
    let small = |f: &Fr| -> Option<u128> {
        let repr = f.to_repr();
        let bytes = repr.as_ref();
        if bytes[16..].iter().any(|&b| b != 0) {
            return None;
        }
        Some(u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes")))
    };
    if let Some(v) = small(x).filter(|v| *v <= i128::MAX as u128) {
        return Some(v as i128);
    }
    small(&-*x).filter(|v| *v <= i128::MAX as u128).map(|v| -(v as i128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_round_trip() {
        for v in [
            0i128,
            1,
            -1,
            1 << 100,
            -(1 << 100),
            i64::MAX as i128,
            i64::MIN as i128,
            u64::MAX as i128,
            -(u64::MAX as i128),
            (u64::MAX as i128) + 1,
        ] {
            assert_eq!(to_i128(&fe(v)), Some(v));
        }
    }
}
