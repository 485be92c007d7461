// The error a refusal test expects: of one class, else the test fails.
import { expect } from "vitest";

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

/** The error of class `cls` that `fn` throws (fails the test when it throws another or returns). */
export function thrown<E extends Error>(cls: ErrorClass<E>, fn: () => unknown): E {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(cls);
    return e as E;
  }
  throw new Error(`expected a ${cls.name}, and nothing was thrown`);
}

/** The error of class `cls` that `p` rejects with (fails the test when it rejects with another or resolves). */
export async function rejected<E extends Error>(cls: ErrorClass<E>, p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(cls);
    return e as E;
  }
  throw new Error(`expected a ${cls.name}, and it resolved`);
}
