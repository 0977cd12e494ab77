//! The scheduler's one source of randomness: a small seeded generator, so that the same state
//! and evaluation always give the same plan (Nomad seeds its node shuffle from the eval id and
//! the state index for the same reason: post-mortems can replay a decision).

/// SplitMix64: tiny, fast, and good enough to shuffle nodes and pick ports.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    #[cfg(test)]
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// Seeded from an evaluation id and a state index: a retried plan (at a newer index)
    /// shuffles differently, as in Nomad.
    pub fn for_eval(eval_id: &str, index: u64) -> SplitMix64 {
        // FNV-1a over the id: stable across platforms and releases.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in eval_id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        SplitMix64(h ^ index)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; 0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for shuffles, and no division.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Fisher–Yates, as Nomad's `ShuffleNodes`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_shuffle_other_seed_other_shuffle() {
        let shuffled = |id: &str, index: u64| {
            let mut v: Vec<u32> = (0..50).collect();
            SplitMix64::for_eval(id, index).shuffle(&mut v);
            v
        };
        assert_eq!(shuffled("e1", 5), shuffled("e1", 5));
        assert_ne!(shuffled("e1", 5), shuffled("e2", 5));
        assert_ne!(shuffled("e1", 5), shuffled("e1", 6));
        let mut sorted = shuffled("e1", 5);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
