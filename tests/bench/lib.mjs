// What the benchmarks (av_drift, latency, g2g) share: their run-and-clean-up frame and
// their statistics. Processes, browsers and pages come from ../e2e/lib.mjs.

import { Scope } from '../e2e/lib.mjs';

/**
 * Runs a benchmark: `body(scope)` starts what it needs in `scope` and returns whether it
 * failed. A throw counts as a failure, with the scope's logs and the error on stderr.
 * Everything in the scope is stopped at the end; the exit status is 1 on a failure.
 */
export async function runBench(name, body) {
  const scope = new Scope(name);
  let failed = false;
  try {
    failed = Boolean(await body(scope));
  } catch (err) {
    failed = true;
    scope.dump();
    console.error(`${name}: ${err?.stack || err}`);
  } finally {
    await scope.cleanup();
  }
  process.exitCode = failed ? 1 : 0;
}

/** The `q` quantile (0..1) of `xs`, one of its values (nearest rank); NaN for none. */
export const quantile = (xs, q) => {
  if (!xs.length) return NaN;
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))];
};

/**
 * The command line one argument at a time: yields [arg, val], where val() takes the next
 * argument as this option's value (an error if there is none).
 */
export function* cliArgs(argv) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    yield [a, () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    }];
  }
}
