//! id → row lookup that costs ~6 bytes per item: an open-addressing table of u32 rows whose
//! keys are read from the shard's `ids` column (linear probing, backward-shift deletion).

const EMPTY: u32 = u32::MAX;

/// Maps live item ids to rows; the ids themselves live in the shard's id column.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdMap {
    slots: Vec<u32>,
    len: usize,
}

#[inline]
fn hash(id: u64) -> u64 {
    // Fibonacci hashing of a mixed id; ids are often sequential.
    let mut z = id ^ (id >> 33);
    z = z.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z ^ (z >> 33)
}

impl IdMap {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    pub(crate) fn get(&self, id: u64, ids: &[u64]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = hash(id) as usize & self.mask();
        loop {
            let r = self.slots[i];
            if r == EMPTY {
                return None;
            }
            if ids[r as usize] == id {
                return Some(r);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Inserts `row` for `ids[row]`, which must not be present.
    pub(crate) fn insert(&mut self, row: u32, ids: &[u64]) {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow(ids);
        }
        self.place(row, ids);
        self.len += 1;
    }

    fn place(&mut self, row: u32, ids: &[u64]) {
        let mut i = hash(ids[row as usize]) as usize & self.mask();
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = row;
    }

    fn grow(&mut self, ids: &[u64]) {
        let cap = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; cap]);
        for r in old.into_iter().filter(|&r| r != EMPTY) {
            self.place(r, ids);
        }
    }

    /// Removes `id`, returning its row.
    pub(crate) fn remove(&mut self, id: u64, ids: &[u64]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash(id) as usize & mask;
        loop {
            let r = self.slots[i];
            if r == EMPTY {
                return None;
            }
            if ids[r as usize] == id {
                break;
            }
            i = (i + 1) & mask;
        }
        let row = self.slots[i];
        // Backward-shift: pull later members of the probe run into the hole.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        while self.slots[j] != EMPTY {
            let home = hash(ids[self.slots[j] as usize]) as usize & mask;
            // Move j to the hole if its home is not in (hole, j] cyclically.
            let dist_home = j.wrapping_sub(home) & mask;
            let dist_hole = j.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        Some(row)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * 4
    }
}
