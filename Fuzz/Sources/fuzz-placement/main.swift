import Foundation
import FuzzSupport
import Strata

/// A saved placement or plan file: decoded and validated against a 22-layer model, or an error.
func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let d = Data(bytes: data, count: size)
    if let p = try? JSONDecoder().decode(Placement.self, from: d) { _ = try? p.validate(layers: 22) }
    if let plan = try? JSONDecoder().decode(Plan.self, from: d) { _ = try? plan.placement.validate(layers: 22) }
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
