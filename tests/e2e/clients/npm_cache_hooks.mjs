// Module resolution hooks (see npm_cache.mjs): a bare specifier imported by a script of this
// folder resolves as if imported from the npm cache; every other import resolves as usual.
let scripts;
let parent;

export function initialize(data) {
  ({ scripts, parent } = data);
}

export function resolve(specifier, context, nextResolve) {
  const bare = !/^(?:[a-z]+:|\.{0,2}\/)/.test(specifier);
  if (bare && context.parentURL?.startsWith(scripts)) {
    return nextResolve(specifier, { ...context, parentURL: parent });
  }
  return nextResolve(specifier, context);
}
