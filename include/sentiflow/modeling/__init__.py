"""Model families behind one interface, so selection and serving never care which family won."""
