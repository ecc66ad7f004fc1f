import Foundation
import StrataTensor

/// Writes a safetensors file: the header first (tensor names, dtypes, shapes and offsets in
/// the order given), then each tensor's bytes streamed by the caller in that order, so
/// multi-GB files never sit in memory. It writes `<path>.partial` and renames it over `path`
/// in `finish()`, so a reader never sees half a file and mappings of an old file stay valid.
public final class SafetensorsWriter {
    public struct Spec: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
        public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    public let path: String
    let partialPath: String
    let fd: Int32
    let specs: [Spec]
    /// absolute offset of each tensor's data
    let offsets: [Int]
    var next = 0
    var writtenInCurrent = 0
    public let totalBytes: Int

    public init(path: String, tensors: [Spec], metadata: [String: String] = ["format": "pt"]) throws {
        self.path = path
        specs = tensors
        var header: [String: Any] = ["__metadata__": metadata]
        var off = 0
        var rel: [Int] = []
        for s in tensors {
            header[s.name] = ["dtype": ["f32": "F32", "f16": "F16", "bf16": "BF16"][s.dtype.rawValue]!, "shape": s.shape,
                              "data_offsets": [off, off + s.byteCount]] as [String: Any]
            rel.append(off)
            off += s.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces so data starts 8-aligned
        var prefix = Data(count: 8)
        let n = UInt64(json.count)
        for i in 0..<8 { prefix[i] = UInt8((n >> (8 * UInt64(i))) & 0xFF) }
        prefix.append(json)
        let partial = path + ".partial"
        self.partialPath = partial
        try FileIO.requireReplaceable(path)
        let fd = try FileIO.createWrite(partial)
        do {
            try prefix.withUnsafeBytes { try FileIO.pwrite(fd: fd, path: partial, from: $0.baseAddress!, count: prefix.count, offset: 0) }
        } catch {
            FileIO.closeFile(fd)
            throw error
        }
        self.fd = fd
        offsets = rel.map { $0 + prefix.count }
        totalBytes = prefix.count + off
    }

    /// Appends `count` bytes of the current tensor (tensors in the order given at init).
    public func write(_ bytes: UnsafeRawPointer, count: Int) throws {
        precondition(next < specs.count, "SafetensorsWriter: all tensors already written")
        let spec = specs[next]
        precondition(writtenInCurrent + count <= spec.byteCount, "SafetensorsWriter: too many bytes for \(spec.name)")
        try FileIO.pwrite(fd: fd, path: partialPath, from: bytes, count: count, offset: offsets[next] + writtenInCurrent)
        writtenInCurrent += count
        if writtenInCurrent == spec.byteCount { next += 1; writtenInCurrent = 0 }
    }

    /// Closes the file; throws if a tensor was left short.
    public func finish() throws {
        if next == specs.count || specs.isEmpty {
            // on the disk before the rename makes it the file: a crash leaves the old file or the whole new one
            do { try FileIO.sync(fd: fd, path: partialPath) } catch { FileIO.closeFile(fd); throw error }
        }
        FileIO.closeFile(fd)
        if next != specs.count && !specs.isEmpty {
            try? FileManager.default.removeItem(atPath: partialPath)
            throw FileError.unexpectedEOF(path: path, offset: offsets[min(next, specs.count - 1)], count: specs[min(next, specs.count - 1)].byteCount)
        }
        try FileIO.rename(partialPath, to: path)
    }

    /// Closes and removes the partial file (an error or a stop before `finish`).
    public func abandon() {
        FileIO.closeFile(fd)
        FileIO.remove(partialPath)
    }

    /// Writes whole tensors (small files, tests).
    public static func write(path: String, tensors: [(String, Tensor)]) throws {
        let w = try SafetensorsWriter(path: path, tensors: tensors.map { Spec(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape) })
        for (_, t) in tensors {
            precondition(t.isContiguous, "SafetensorsWriter.write: non-contiguous tensor")
            if t.byteCount > 0 { try w.write(t.rawPointer, count: t.byteCount) }
        }
        try w.finish()
    }
}
