import { RouteTable } from './route-table.js';

/**
 * The only mutable cell of the data plane: the current route table, swapped whole.
 * A request reads `current` once and keeps that table for its whole life.
 */
export class RouteTableRef<R> {
  #current: RouteTable<R>;

  constructor(initial: RouteTable<R> = new RouteTable<R>(0, [])) {
    this.#current = initial;
  }

  get current(): RouteTable<R> {
    return this.#current;
  }

  /** Installs a newer table; an older version than the current one is ignored. Returns the previous table. */
  swap(next: RouteTable<R>): RouteTable<R> {
    const previous = this.#current;
    if (next.version >= previous.version) this.#current = next;
    return previous;
  }
}
