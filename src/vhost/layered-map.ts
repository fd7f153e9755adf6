const REMOVED: unique symbol = Symbol('removed');

type Layer<K, V> = ReadonlyMap<K, V | typeof REMOVED>;

/** Changes held in the top layer before they move into the middle one (copied by every `with`). */
const RECENT_MAX = 32;
/** Least size of the middle layer before it is folded into the base. */
const MIDDLE_MIN = 256;

/**
 * An immutable map made of a large base and two layers of changes on top of it (tombstones mark
 * removals): `recent`, at most 32 entries, copied by every `with`; `middle`, rebuilt with them each
 * time `recent` fills; and the base, copied only when `middle` grows past about √(32 × base size).
 * A change costs ~√(32 n)/16 entry copies amortised, instead of a fixed fraction of n (at 100,000
 * entries: ~130 instead of ~850), and reads check at most three maps, the small ones first.
 */
export class LayeredMap<K, V> {
  readonly #base: ReadonlyMap<K, V>;
  readonly #middle: Layer<K, V>;
  readonly #recent: Layer<K, V>;
  readonly size: number;

  private constructor(base: ReadonlyMap<K, V>, middle: Layer<K, V>, recent: Layer<K, V>, size: number) {
    this.#base = base;
    this.#middle = middle;
    this.#recent = recent;
    this.size = size;
    Object.freeze(this);
  }

  /** A map of `entries` (a later entry for the same key wins). */
  static of<K, V>(entries: Iterable<readonly [K, V]> = []): LayeredMap<K, V> {
    const base = new Map<K, V>(entries);
    return new LayeredMap(base, EMPTY as Layer<K, V>, EMPTY as Layer<K, V>, base.size);
  }

  /** The value for `key`. Hot path: no allocation. */
  get(key: K): V | undefined {
    if (this.#recent.size !== 0) {
      const changed = this.#recent.get(key);
      if (changed !== undefined) return changed === REMOVED ? undefined : changed;
    }
    if (this.#middle.size !== 0) {
      const changed = this.#middle.get(key);
      if (changed !== undefined) return changed === REMOVED ? undefined : changed;
    }
    return this.#base.get(key);
  }

  has(key: K): boolean {
    return this.get(key) !== undefined;
  }

  /** A new map with `sets` set and `deletes` removed (a key in both ends up set). */
  with(sets: Iterable<readonly [K, V]>, deletes: Iterable<K> = []): LayeredMap<K, V> {
    const recent = new Map<K, V | typeof REMOVED>(this.#recent);
    let size = this.size;
    for (const key of deletes) {
      if (this.#present(recent, key)) size--;
      // A tombstone only where a lower layer still holds the key.
      if (this.#middle.has(key) || this.#base.has(key)) recent.set(key, REMOVED);
      else recent.delete(key);
    }
    for (const [key, value] of sets) {
      if (!this.#present(recent, key)) size++;
      recent.set(key, value);
    }
    if (recent.size <= RECENT_MAX) return new LayeredMap(this.#base, this.#middle, recent, size);
    const middle = new Map<K, V | typeof REMOVED>(this.#middle);
    for (const [key, value] of recent) {
      if (value === REMOVED && !this.#base.has(key)) middle.delete(key);
      else middle.set(key, value);
    }
    if (middle.size <= Math.max(MIDDLE_MIN, Math.ceil(Math.sqrt(RECENT_MAX * this.#base.size)))) {
      return new LayeredMap(this.#base, middle, EMPTY as Layer<K, V>, size);
    }
    const base = new Map<K, V>(this.#base);
    for (const [key, value] of middle) {
      if (value === REMOVED) base.delete(key);
      else base.set(key, value);
    }
    return new LayeredMap(base, EMPTY as Layer<K, V>, EMPTY as Layer<K, V>, base.size);
  }

  /** Every entry: the base's not overridden above, then the middle layer's, then the recent one's. */
  *entries(): IterableIterator<[K, V]> {
    const middle = this.#middle;
    const recent = this.#recent;
    for (const entry of this.#base) if (!middle.has(entry[0]) && !recent.has(entry[0])) yield entry;
    for (const [key, value] of middle) if (value !== REMOVED && !recent.has(key)) yield [key, value];
    for (const [key, value] of recent) if (value !== REMOVED) yield [key, value];
  }

  keys(): IterableIterator<K> {
    return mapIterator(this.entries(), ([key]) => key);
  }

  values(): IterableIterator<V> {
    return mapIterator(this.entries(), ([, value]) => value);
  }

  /** Whether `key` is in this map as `recent` (the layer being built) leaves it. */
  #present(recent: Layer<K, V>, key: K): boolean {
    const top = recent.get(key);
    if (top !== undefined) return top !== REMOVED;
    const middle = this.#middle.get(key);
    if (middle !== undefined) return middle !== REMOVED;
    return this.#base.has(key);
  }
}

/** The one empty layer every map shares (never written: layers are copied before they change). */
const EMPTY: ReadonlyMap<unknown, never> = new Map<unknown, never>();

function* mapIterator<T, U>(source: Iterable<T>, map: (item: T) => U): IterableIterator<U> {
  for (const item of source) yield map(item);
}
