//! splitmix64: the small deterministic generator (and hash) behind everything the sandbox
//! makes up (the default dataset, the month's usage, correlation ids, fault rolls), so it is
//! the same on every machine and with every version of the random crates.

/// The next number of the stream whose state is `state`.
#[inline]
pub fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-spread hash of `z`: the first number of the stream whose state is `z`.
#[inline]
pub fn mix(z: u64) -> u64 {
    let mut state = z;
    next(&mut state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_splitmix64() {
        // The reference values of splitmix64 from state 0.
        let mut s = 0;
        assert_eq!(next(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(next(&mut s), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
    }
}
