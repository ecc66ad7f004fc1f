/// `Tensor`-level forms of the BLAS wrapper, for tools and tests. They allocate
/// their result; the forward pass uses the pointer forms on preallocated buffers.
extension Tensor {
    /// Row stride and transpose flag of a rank-2 f32 view for BLAS, or nil when
    /// neither dimension is unit-stride (then a contiguous copy is needed).
    fileprivate var blasLayout: (trans: Bool, ld: Int)? {
        precondition(rank == 2, "blasLayout of a rank-\(rank) tensor")
        if strides[1] == 1 && strides[0] >= max(1, shape[1]) { return (false, strides[0]) }
        if strides[0] == 1 && strides[1] >= max(1, shape[0]) { return (true, strides[1]) }
        if shape[0] <= 1 && strides[1] == 1 { return (false, max(1, shape[1])) }
        if shape[1] <= 1 && strides[0] == 1 { return (true, max(1, shape[0])) }
        return nil
    }

    fileprivate func blasReady() -> (Tensor, Bool, Int) {
        let t = dtype == .f32 ? self : contiguousF32()
        if let l = t.blasLayout { return (t, l.trans, l.ld) }
        let c = t.contiguousF32()
        return (c, false, c.shape[1])
    }

    /// Matrix product. `self` `[M, K]` times `other` `[K, N]` -> `[M, N]`; rank-3 inputs are
    /// a batch (`[B, M, K] x [B, K, N]`, or a rank-2 `other` broadcast over the batch).
    /// Transposed and strided views go to `cblas_sgemm` as transpose flags and leading
    /// dimensions, without copying; f16/bf16 inputs are converted first.
    public func matmul(_ other: Tensor) -> Tensor {
        if rank == 3 {
            precondition(other.rank == 2 || (other.rank == 3 && other.shape[0] == shape[0]),
                         "matmul: batch \(shape) x \(other.shape)")
            let b = shape[0]
            let out = Tensor(zeros: [b, shape[1], other.shape[other.rank - 1]])
            for i in 0..<b {
                let ai = slice(dim: 0, i..<(i + 1)).squeezed0()
                let bi = other.rank == 3 ? other.slice(dim: 0, i..<(i + 1)).squeezed0() : other
                let ci = out.slice(dim: 0, i..<(i + 1)).squeezed0()
                ai.matmul(bi, into: ci)
            }
            return out
        }
        let out = Tensor(zeros: [shape[0], other.shape[1]])
        matmul(other, into: out)
        return out
    }

    /// `out = self * other` for rank-2 operands; `out` must be a contiguous-row f32 `[M, N]` view.
    public func matmul(_ other: Tensor, into out: Tensor) {
        precondition(rank == 2 && other.rank == 2 && shape[1] == other.shape[0],
                     "matmul: \(shape) x \(other.shape)")
        precondition(out.dtype == .f32 && out.shape == [shape[0], other.shape[1]] && out.strides[1] == 1,
                     "matmul: output \(out.shape) strides \(out.strides) for \(shape) x \(other.shape)")
        let (a, ta, lda) = blasReady()
        let (b, tb, ldb) = other.blasReady()
        BLAS.sgemm(transA: ta, transB: tb, m: shape[0], n: other.shape[1], k: shape[1],
                   a: a.f32, lda: lda, b: b.f32, ldb: ldb, c: out.f32, ldc: max(1, out.strides[0]))
    }

    /// Linear layer: `self` `[M, K]` times `weight^T` (`weight` `[N, K]`, the HF layout) plus `bias` `[N]`.
    public func linear(weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(rank == 2 && weight.rank == 2 && weight.shape[1] == shape[1],
                     "linear: x \(shape) with weight \(weight.shape)")
        let out = weight.transposed().matmulLeft(self)
        if let bias {
            precondition(bias.shape == [weight.shape[0]], "linear: bias \(bias.shape) for weight \(weight.shape)")
            let bc = bias.contiguousF32()
            for r in 0..<out.shape[0] { Ops.add(out.f32 + r * out.shape[1], bc.f32, out.f32 + r * out.shape[1], count: bc.count) }
        }
        return out
    }

    private func matmulLeft(_ x: Tensor) -> Tensor {
        // single row: the GEMV path (bandwidth-bound), weight must be [N, K] row-major underneath
        if x.shape[0] == 1, dtype == .f32, strides[0] == 1, strides[1] >= shape[0] {
            let xc = x.contiguousF32()
            let out = Tensor(zeros: [1, shape[1]])
            BLAS.sgemv(m: shape[1], n: shape[0], a: f32, lda: strides[1], x: xc.f32, y: out.f32)
            return out
        }
        return x.matmul(self)
    }

    fileprivate func squeezed0() -> Tensor {
        Tensor(storage: storage, dtype: dtype, shape: Array(shape.dropFirst()), strides: Array(strides.dropFirst()), offset: offset)
    }
}
