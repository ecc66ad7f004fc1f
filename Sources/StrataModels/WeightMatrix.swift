import Foundation
import StrataFormats
import StrataTensor

/// A weight matrix used by a linear layer, in one of two layouts:
/// `.outIn` `[out, in]` (HF `nn.Linear`: y = x W^T) or `.inOut` `[in, out]` (GPT-2's `Conv1D`: y = x W).
/// f16/bf16 weights stay views into the checkpoint and are converted into the caller's scratch
/// at use, so the model is never held twice.
struct WeightMatrix {
    enum Layout { case outIn, inOut }
    let tensor: Tensor
    let layout: Layout
    let inFeatures: Int
    let outFeatures: Int
    /// `[out]` f32 copy, if the layer has a bias.
    let bias: Tensor?

    init(_ tensor: Tensor, layout: Layout = .outIn, bias: Tensor? = nil) {
        precondition(tensor.rank == 2 && tensor.isContiguous, "WeightMatrix: \(tensor.shape)")
        self.tensor = tensor
        self.layout = layout
        (outFeatures, inFeatures) = layout == .outIn ? (tensor.shape[0], tensor.shape[1]) : (tensor.shape[1], tensor.shape[0])
        self.bias = bias.map { $0.contiguousF32() }
        if let b = self.bias { precondition(b.count == outFeatures, "WeightMatrix: bias \(b.shape) for \(outFeatures) outputs") }
    }

    var elementCount: Int { inFeatures * outFeatures }

    /// y[rows, out] (+)= x[rows, in] * W (+ bias). `scratch` holds >= elementCount floats when the weight is not f32.
    func apply(_ x: UnsafePointer<Float>, rows: Int, _ y: UnsafeMutablePointer<Float>, ldx: Int? = nil, ldy: Int? = nil,
               accumulate: Bool = false, scratch: UnsafeMutablePointer<Float>?) {
        let bp = bias.map { UnsafePointer($0.f32) }
        let lx = ldx ?? inFeatures, ly = ldy ?? outFeatures
        if bf16Products(rows: rows), let scratch, Kernels.gemmBF16(weight: tensor.rawPointer, dtype: tensor.dtype, outFeatures: outFeatures, inFeatures: inFeatures,
                                                  x: x, rows: rows, ldx: lx, y: y, ldy: ly, accumulate: accumulate,
                                                  scratch: scratch, scratchElements: WeightMatrix.convertElements) {
            // a prefill in a fast (non-exact) mode, quantized or 16-bit weights: bf16 products (AVX-512 BF16)
        } else if layout == .outIn && rows <= Kernels.maxRows(dtype: tensor.dtype) {
            // few rows (a decode step): the kernel reads each weight byte once for all rows and
            // widens 16-bit weights in registers, no conversion pass
            Kernels.linear(weight: tensor.rawPointer, dtype: tensor.dtype, outFeatures: outFeatures, inFeatures: inFeatures,
                           x: x, rows: rows, ldx: lx, y: y, ldy: ly, accumulate: accumulate)
        } else if tensor.dtype == .f32 {
            let w = UnsafePointer(tensor.f32)
            switch layout {
            case .outIn:
                BLAS.linear(x: x, rows: rows, inFeatures: inFeatures, ldx: ldx, weight: w, outFeatures: outFeatures,
                            bias: bp, y: y, ldy: ldy, accumulate: accumulate)
                return
            case .inOut:
                let beta: Float = accumulate ? 1 : 0
                if rows == 1 {
                    BLAS.sgemv(trans: true, m: inFeatures, n: outFeatures, a: w, lda: outFeatures, x: x, beta: beta, y: y)
                } else {
                    BLAS.sgemm(m: rows, n: outFeatures, k: inFeatures, a: x, lda: lx, b: w, ldb: outFeatures, beta: beta, c: y, ldc: ly)
                }
            }
        } else {
            // 16-bit weights, many rows: convert a band of the weight at a time into the scratch
            // (at most `WeightMatrix.convertElements` floats) and multiply that band
            guard let scratch else { preconditionFailure("WeightMatrix: \(tensor.dtype) weight needs conversion scratch") }
            let rowBytes = tensor.rowBytes
            switch layout {
            case .outIn:
                let band = max(1, min(outFeatures, WeightMatrix.convertElements / inFeatures))
                var o = 0
                while o < outFeatures {
                    let n = min(band, outFeatures - o)
                    HalfConversion.toF32(tensor.rawPointer + o * rowBytes, dtype: tensor.dtype, scratch, count: n * inFeatures)
                    BLAS.linear(x: x, rows: rows, inFeatures: inFeatures, ldx: lx, weight: scratch, outFeatures: n,
                                y: y + o, ldy: ly, accumulate: accumulate)
                    o += n
                }
            case .inOut:
                let band = max(1, min(inFeatures, WeightMatrix.convertElements / outFeatures))
                var i = 0
                while i < inFeatures {
                    let n = min(band, inFeatures - i)
                    HalfConversion.toF32(tensor.rawPointer + i * rowBytes, dtype: tensor.dtype, scratch, count: n * outFeatures)
                    let beta: Float = (accumulate || i > 0) ? 1 : 0
                    BLAS.sgemm(m: rows, n: outFeatures, k: n, a: x + i, lda: lx, b: scratch, ldb: outFeatures, beta: beta, c: y, ldc: ly)
                    i += n
                }
            }
        }
        addBias(y, rows: rows, ldy: ly)
    }

    private func addBias(_ y: UnsafeMutablePointer<Float>, rows: Int, ldy ly: Int) {
        guard let bp = bias.map({ UnsafePointer($0.f32) }) else { return }
        for r in 0..<rows { let row = y + r * ly; for j in 0..<outFeatures { row[j] += bp[j] } }
    }

    /// Whether `apply` of `rows` rows tries the bf16-product GEMM first (a fast mode's prefill or
    /// large batch over 16-bit or quantized weights).
    private func bf16Products(rows: Int) -> Bool {
        layout == .outIn && rows >= Kernels.bf16ProductsMinRows(dtype: tensor.dtype) && Kernels.prefillUsesBF16Products(dtype: tensor.dtype)
    }

    /// Whether `apply` of `rows` rows takes the few-row kernel (`Kernels.linear`).
    func fewRowKernel(rows: Int) -> Bool {
        layout == .outIn && rows <= Kernels.maxRows(dtype: tensor.dtype) && !bf16Products(rows: rows)
    }

    /// `a.1 = x a.0`, `b.1 = x b.0` (and c), y rows `outFeatures` apart, x rows `inFeatures`: the
    /// matrices that share an input (q, k, v; gate, up). Where each would take the few-row kernel,
    /// one job on the pool for all of them (`Kernels.linearGroup`: no wait at each matrix's end,
    /// 8-bit activations quantized once); else one `apply` each.
    static func applyGroup(_ x: UnsafePointer<Float>, rows: Int, _ a: (WeightMatrix, UnsafeMutablePointer<Float>),
                           _ b: (WeightMatrix, UnsafeMutablePointer<Float>), _ c: (WeightMatrix, UnsafeMutablePointer<Float>)? = nil,
                           scratch: UnsafeMutablePointer<Float>?) {
        let k = a.0.inFeatures
        guard a.0.fewRowKernel(rows: rows), b.0.fewRowKernel(rows: rows), b.0.inFeatures == k,
              c.map({ $0.0.fewRowKernel(rows: rows) && $0.0.inFeatures == k }) ?? true else {
            a.0.apply(x, rows: rows, a.1, scratch: scratch)
            b.0.apply(x, rows: rows, b.1, scratch: scratch)
            if let c { c.0.apply(x, rows: rows, c.1, scratch: scratch) }
            return
        }
        func member(_ m: (WeightMatrix, UnsafeMutablePointer<Float>)) -> Kernels.GroupMember {
            Kernels.GroupMember(weight: m.0.tensor.rawPointer, dtype: m.0.tensor.dtype, outFeatures: m.0.outFeatures, y: m.1)
        }
        Kernels.linearGroup(x: x, rows: rows, inFeatures: k, member(a), member(b), c.map(member))
        a.0.addBias(a.1, rows: rows, ldy: a.0.outFeatures)
        b.0.addBias(b.1, rows: rows, ldy: b.0.outFeatures)
        if let c { c.0.addBias(c.1, rows: rows, ldy: c.0.outFeatures) }
    }

    /// Floats of the f16/bf16/quantized conversion scratch: a band of the weight, not the whole matrix.
    static let convertElements = 4 << 20

    /// Scratch a model with these weight shapes needs (0 for f32 weights).
    static func scratchElements(dtype: DType, largest: Int) -> Int {
        dtype == .f32 ? 0 : min(largest, convertElements)
    }
}
