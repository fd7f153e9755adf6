const REMOVED: unique symbol = Symbol('removed');

/**
 * An immutable map made of a large base and a small overlay of changes (tombstones for removals):
 * `with` costs the size of the overlay, not of the base, and folds the overlay into a new base once
 * it grows past a fraction of it (amortised: a full copy per many changes). Reads check the overlay
 * first, then the base: two hash probes at most.
 */
export class LayeredMap<K, V> {
  readonly #base: ReadonlyMap<K, V>;
  readonly #overlay: ReadonlyMap<K, V | typeof REMOVED>;
  readonly size: number;

  private constructor(base: ReadonlyMap<K, V>, overlay: ReadonlyMap<K, V | typeof REMOVED>, size: number) {
    this.#base = base;
    this.#overlay = overlay;
    this.size = size;
    Object.freeze(this);
  }

  /** A map of `entries` (a later entry for the same key wins). */
  static of<K, V>(entries: Iterable<readonly [K, V]> = []): LayeredMap<K, V> {
    const base = new Map<K, V>(entries);
    return new LayeredMap(base, new Map(), base.size);
  }

  /** The value for `key`. Hot path: no allocation. */
  get(key: K): V | undefined {
    if (this.#overlay.size !== 0) {
      const changed = this.#overlay.get(key);
      if (changed !== undefined) return changed === REMOVED ? undefined : changed;
    }
    return this.#base.get(key);
  }

  has(key: K): boolean {
    return this.get(key) !== undefined;
  }

  /** A new map with `sets` set and `deletes` removed (a key in both ends up set). */
  with(sets: Iterable<readonly [K, V]>, deletes: Iterable<K> = []): LayeredMap<K, V> {
    const overlay = new Map<K, V | typeof REMOVED>(this.#overlay);
    const present = (key: K): boolean => (overlay.has(key) ? overlay.get(key) !== REMOVED : this.#base.has(key));
    let size = this.size;
    for (const key of deletes) {
      if (present(key)) size--;
      if (this.#base.has(key)) overlay.set(key, REMOVED);
      else overlay.delete(key);
    }
    for (const [key, value] of sets) {
      if (!present(key)) size++;
      overlay.set(key, value);
    }
    if (overlay.size > Math.max(512, this.#base.size >> 6)) {
      const base = new Map<K, V>(this.#base);
      for (const [key, value] of overlay) {
        if (value === REMOVED) base.delete(key);
        else base.set(key, value);
      }
      return new LayeredMap(base, new Map(), base.size);
    }
    return new LayeredMap(this.#base, overlay, size);
  }

  /** Every entry (base entries not overridden, then the overlay's). */
  *entries(): IterableIterator<[K, V]> {
    for (const entry of this.#base) if (this.#overlay.size === 0 || !this.#overlay.has(entry[0])) yield entry;
    for (const [key, value] of this.#overlay) if (value !== REMOVED) yield [key, value];
  }

  keys(): IterableIterator<K> {
    return mapIterator(this.entries(), ([key]) => key);
  }

  values(): IterableIterator<V> {
    return mapIterator(this.entries(), ([, value]) => value);
  }
}

function* mapIterator<T, U>(source: Iterable<T>, map: (item: T) => U): IterableIterator<U> {
  for (const item of source) yield map(item);
}
