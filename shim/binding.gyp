# node-gyp build of the shim (run from the package root by `npm run build:addon`,
# i.e. `node-gyp rebuild -C shim`): the addon and the tracer it starts, both in
# shim/build/Release/.
{
  "targets": [
    {
      "target_name": "patchc_shim",
      "sources": ["addon.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=gnu++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "patchc-tracer",
      "type": "executable",
      "sources": ["tracer.c", "ptrace.c", "journal.c", "proof.c", "sharers.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "cflags!": ["-fno-exceptions"],
      "ldflags": ["-static-libgcc"]
    }
  ]
}
