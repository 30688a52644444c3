"use strict";
/** A deterministic xorshift32 generator of floats in [0, 1), so failures reproduce. */
function makeRandom(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

module.exports = { makeRandom };
