//! A bounded cache of immutable values (room states by group, parsed events) with two
//! generations: inserts go to the young one; when it outgrows half the budget it becomes the
//! old one and the previous old one is dropped; a hit in the old generation moves the entry
//! back to the young one. A working set up to half the budget stays cached whatever the
//! order of lookups (a plain "empty when full" cache falls off a cliff as soon as one request
//! touches more than the budget: a sync of 200 rooms did), at the cost of a second lookup.

use std::{collections::HashMap, hash::Hash, sync::Mutex};

pub(crate) struct GenCache<K, V> {
    inner: Mutex<Generations<K, V>>,
    /// Budget in weight units (see `weight`), both generations together.
    budget: usize,
    weight: fn(&V) -> usize,
}

struct Generations<K, V> {
    young: HashMap<K, V>,
    young_weight: usize,
    old: HashMap<K, V>,
}

impl<K: Hash + Eq + Clone, V: Clone> GenCache<K, V> {
    pub(crate) fn new(budget: usize, weight: fn(&V) -> usize) -> Self {
        GenCache {
            inner: Mutex::new(Generations { young: HashMap::new(), young_weight: 0, old: HashMap::new() }),
            budget,
            weight,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = g.young.get(key) {
            return Some(value.clone());
        }
        let value = g.old.remove(key)?;
        self.put(&mut g, key.clone(), value.clone());
        Some(value)
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.put(&mut g, key, value);
    }

    fn put(&self, g: &mut Generations<K, V>, key: K, value: V) {
        g.young_weight += (self.weight)(&value);
        if let Some(replaced) = g.young.insert(key, value) {
            g.young_weight -= (self.weight)(&replaced).min(g.young_weight);
        }
        if g.young_weight > self.budget / 2 {
            g.old = std::mem::take(&mut g.young);
            g.young_weight = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GenCache;

    #[test]
    fn a_working_set_within_half_the_budget_stays() {
        let cache: GenCache<u32, u32> = GenCache::new(100, |_| 1);
        for round in 0..5 {
            for key in 0..40 {
                if round > 0 {
                    assert_eq!(cache.get(&key), Some(key), "round {round} key {key}");
                } else {
                    cache.insert(key, key);
                }
            }
        }
    }

    #[test]
    fn weight_bounds_what_is_kept() {
        let cache: GenCache<u32, Vec<u8>> = GenCache::new(100, Vec::len);
        for key in 0..10 {
            cache.insert(key, vec![0; 30]);
        }
        // At most two generations of at most 50 (+ one entry) each.
        let kept = (0..10).filter(|k| cache.get(k).is_some()).count();
        assert!(kept <= 4, "{kept} entries of 30 kept with a budget of 100");
        assert!(cache.get(&9).is_some(), "the newest entry is kept");
    }
}
