"""``prefetch(buf, index)``: a cache hint usable in compiled code, so that memory waits overlap with work.

Compiled callers are cached by numba per defining file; this intrinsic is not
expected to change, so its callers' caches need not notice it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import config as numba_config
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

if numba_config.DISABLE_JIT:

    def prefetch(buf, index):
        """Nothing to do in plain Python."""

else:

    @intrinsic
    def prefetch(typingctx, buf, index):
        """Hint the CPU to fetch ``buf[index]`` into the cache; it reads nothing, so any index is safe."""

        def codegen(context, builder, signature, args):
            array = context.make_array(signature.args[0])(context, builder, args[0])
            byte_pointer = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            llvm_prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8"
            )
            # Named as typed-pointer LLVM names it; LLVM with opaque pointers upgrades the name itself.
            address = builder.bitcast(builder.gep(array.data, [args[1]]), byte_pointer)
            builder.call(llvm_prefetch, [address, i32(0), i32(3), i32(1)])  # read, keep in all caches, data
            return context.get_dummy_value()

        return types.void(buf, index), codegen
