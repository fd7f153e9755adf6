import { describe, expect, it } from 'vitest';
import { LayeredMap } from '../../src/vhost/index.js';

describe('LayeredMap', () => {
  it('behaves as an immutable map through sets, deletes and compactions', () => {
    // A model: a plain Map changed in place, compared with the layered map after every step.
    const model = new Map<string, number>();
    let layered = LayeredMap.of<string, number>();
    const versions: [LayeredMap<string, number>, Map<string, number>][] = [];
    let seed = 7;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let step = 0; step < 3_000; step++) {
      const sets: [string, number][] = [];
      const deletes: string[] = [];
      for (let i = 0; i < 1 + random(5); i++) {
        const key = `k${random(700)}`;
        if (random(3) === 0) deletes.push(key);
        else sets.push([key, step]);
      }
      const setKeys = new Set(sets.map(([key]) => key));
      const disjointDeletes = deletes.filter((key) => !setKeys.has(key));
      layered = layered.with(sets, disjointDeletes);
      for (const key of disjointDeletes) model.delete(key);
      for (const [key, value] of sets) model.set(key, value);
      expect(layered.size).toBe(model.size);
      if (step % 500 === 0) versions.push([layered, new Map(model)]);
    }
    expect(new Map(layered.entries())).toEqual(model);
    for (const key of ['k1', 'k350', 'k699', 'missing']) expect(layered.get(key)).toBe(model.get(key));
    // Earlier versions did not change.
    for (const [version, snapshot] of versions) expect(new Map(version.entries())).toEqual(snapshot);
  });

  it('stays a map through every layer: changes on top of a large base, merged upwards and folded into it', () => {
    // 20,000 entries: the middle layer folds into the base past ~800 changes, `recent` merges every 32.
    const model = new Map<string, number>(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, -1] as [string, number]));
    let layered = LayeredMap.of(model);
    const versions: [LayeredMap<string, number>, Map<string, number>][] = [];
    let seed = 11;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let step = 0; step < 4_000; step++) {
      // One publish at a time, as the control plane makes them; a key outside the base now and then.
      const key = `k${random(21_000)}`;
      if (random(4) === 0) {
        layered = layered.with([], [key]);
        model.delete(key);
      } else {
        layered = layered.with([[key, step]]);
        model.set(key, step);
      }
      expect(layered.size).toBe(model.size);
      const probe = `k${random(21_000)}`;
      expect(layered.get(probe)).toBe(model.get(probe));
      if (step % 700 === 0) versions.push([layered, new Map(model)]);
    }
    expect(new Map(layered.entries())).toEqual(model);
    expect([...layered.keys()].length).toBe(model.size);
    for (const [version, snapshot] of versions) {
      expect(version.size).toBe(snapshot.size);
      expect(new Map(version.entries())).toEqual(snapshot);
    }
  });

  it('leaves the original untouched', () => {
    const a = LayeredMap.of([['x', 1]]);
    const b = a.with([['y', 2]], ['x']);
    expect([...a.entries()]).toEqual([['x', 1]]);
    expect([...b.entries()]).toEqual([['y', 2]]);
    expect(b.has('x')).toBe(false);
  });
});
