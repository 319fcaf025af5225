// The end of a node-side process that runs until its pod is deleted: the first
// SIGTERM or SIGINT, as a promise to race waits against and a flag for loops.
export interface StopSignal {
  /** Resolves with the signal's name. */
  readonly stopped: Promise<string>;
  /** A signal has come. */
  readonly stopping: () => boolean;
}

export function onStopSignal(): StopSignal {
  let stopping = false;
  const stopped = new Promise<string>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const)
      process.once(sig, () => {
        stopping = true;
        resolve(sig);
      });
  });
  return { stopped, stopping: () => stopping };
}
