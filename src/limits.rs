//! Every bound in Sluice, named, with its unit last in the name.
//! A value here is checked where data enters; nothing grows without a bound.
